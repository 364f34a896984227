"""Passwords are masked in everything conductor writes (masking.mask)."""

from __future__ import annotations

import html
import json
import logging
from urllib.parse import quote

import pytest

from conductor.files import logs, masking
from conductor.report import summary
from conductor.report.console import Reporter, ServiceReport

pytestmark = pytest.mark.conductor

SECRET = 'Mask-Me/<&>"9q'  # unique to this file: hide() lasts for the process


def test_a_url_password_is_masked_without_being_known():
    assert masking.mask("postgresql://app:never-hidden@h:1/db") == "postgresql://app:***@h:1/db"


def test_a_hidden_secret_is_masked_in_every_escaped_form():
    masking.hide(SECRET)
    for form in (SECRET, quote(SECRET, safe=""), html.escape(SECRET), json.dumps(SECRET)[1:-1]):
        assert masking.mask(f"before {form} after") == "before *** after"


def test_console_conductor_log_and_summary_never_hold_a_hidden_secret(tmp_path, capsys):
    import io

    masking.hide(SECRET)
    stream = io.StringIO()
    handler = logs.setup_event_log(tmp_path)
    try:
        reporter = Reporter(stream, fancy=False)
        reporter.event("db", "started", f"waiting for command psql {SECRET}")
        reporter.warning(f"x {SECRET}")
        logs.logger.log(logging.INFO, "%s", SECRET)
    finally:
        logs.close_event_log(handler)
    report = ServiceReport(name="db", url=f"postgresql://u:{quote(SECRET, safe='')}@h:1/d")
    summary.save(
        tmp_path,
        summary.Summary(
            run_id="0" * 32,
            action="pytest",
            exit_code=0,
            command=["pytest", SECRET],
            durations=summary.Durations(startup_s=0, command_s=0, teardown_s=0, total_s=0),
            phases={},
            services={"db": summary.service(report, report.since)},
        ),
    )
    for text in (
        stream.getvalue(),
        (tmp_path / "conductor.log").read_text(),
        (tmp_path / "summary.json").read_text(),
        (tmp_path / "report.html").read_text(),
    ):
        assert "Mask-Me" not in text
        assert "Mask-Me%2F" not in text
    assert "***" in stream.getvalue()
