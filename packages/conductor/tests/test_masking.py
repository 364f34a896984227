"""Passwords are masked in everything conductor writes (masking.mask)."""

from __future__ import annotations

import html
import json
from urllib.parse import quote

import pytest

from conductor import probes
from conductor.config.schema import ReadySpec
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
    """The secret comes in as data - a readiness command, a service's log, COMMAND's
    words, a URL - and is masked there, wherever it then goes."""
    import io

    masking.hide(SECRET)
    stream = io.StringIO()
    log = tmp_path / "db.log"
    log.write_text(f"connecting with {SECRET}\n")
    handler = logs.setup_event_log(tmp_path)
    try:
        reporter = Reporter(stream, fancy=False)
        what = probes.describe(ReadySpec(cmd=("psql", SECRET)), "127.0.0.1", 1)
        reporter.event("db", "started", f"waiting for {what}")
        reporter.failure("db", "exited with status 1", log)
        reporter.log_lines("db", [(SECRET.encode(), True)])
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
    assert stream.getvalue().count("***") == 3
