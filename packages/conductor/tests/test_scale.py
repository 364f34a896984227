"""Teardown at scale: 500 services that stop at once on SIGTERM are all reported
stopped, none killed (issue 18, item 6). A scan of /proc per service's stop blocked the
event loop ~10 ms a time, so the later services' stop_timeouts ran out while they had
already exited: 353 of 500 were reported as having ignored SIGTERM."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter

import pytest

from support import PY

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups"),
]

SERVICES = 500
STOP_TIMEOUT = 2.0


def test_500_services_stop_within_their_stop_timeouts_and_none_is_called_killed(
    conductor, tmp_path
):
    sleep = shutil.which("sleep")
    assert sleep is not None
    lines = ['logs_dir = "logs"']
    for i in range(SERVICES):
        lines.append(
            f'[services.s{i}]\ncommand = ["{sleep}", "600"]\nstop_timeout = {STOP_TIMEOUT}'
        )
    (tmp_path / "conductor.toml").write_text("\n".join(lines) + "\n")
    # Unmeasured: under any trace function (coverage's on 3.11, or a bare sys.settrace)
    # CPython 3.11 spins in nested SIGCHLD handler frames once ~200 children exit at
    # once, and this run never ends. What is tested here is conductor, not coverage.
    conductor.env.pop("COVERAGE_PROCESS_CONFIG", None)
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass", timeout=300)
    assert result.code == 0, result.text[-2000:]
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    outcomes = Counter(service["outcome"] for service in summary["services"].values())
    assert outcomes == {"stopped": SERVICES}, outcomes
    assert "ignored SIGTERM" not in result.err
