"""`clean` after conductor and its watchdog were both killed: a service leader that wrote
over its environment (the run's mark with it, as redis-server's process title does) is
still proven the run's, by being the leader of the session conductor made for it with
its output still the folder's NAME.log; a forged record cannot borrow that proof for a
stranger (issue 18, item 1)."""

from __future__ import annotations

import json
import os
import sys

import psutil
import pytest

from support import PY, fake, gone, kill_conductor_and_its_watchdog, wait_for

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform != "linux", reason="the proof reads /proc"),
]

RUN_ID = "ab" * 16
WAIT = "import pathlib, sys, time\npathlib.Path(sys.argv[1]).write_text('yes')\ntime.sleep(120)"


def test_clean_stops_a_leader_whose_environment_lost_the_mark(conductor, config, tmp_path):
    config(
        {
            "blank": {
                "command": ["env", "-i", *fake("stubborn", "--port", "{port}")],
                "port": "auto",
                "stop_timeout": 1,
            }
        }
    )
    running = tmp_path / "running"
    run = conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", WAIT, str(running))
    wait_for(running.exists, timeout=30, what="the command")
    record = json.loads((tmp_path / "logs" / ".conductor-run.json").read_text())
    (leader,) = record["processes"]
    process = psutil.Process(leader["pid"])
    try:
        assert "CONDUCTOR_RUN_ID" not in process.environ()
        kill_conductor_and_its_watchdog(run, tmp_path / "logs")
        result = conductor.run("clean", "--config", "conductor.toml")
        assert result.code == 0, result.text
        assert f"pid {leader['pid']}" in result.out, result.text
        assert gone(leader["pid"])
    finally:
        # Unmarked, it is unseen by the fixture's check: a test stopped before clean
        # (a failure, a Ctrl-C) must not leave it (this very process: pid and start)
        if process.is_running():
            process.kill()


def _forge(logs, stranger: psutil.Popen) -> None:
    entry = {
        "service": "svc",
        "pid": stranger.pid,
        "pgid": stranger.pid,
        "created": stranger.create_time(),
        "stop_signal": "SIGKILL",
    }
    (logs / ".conductor-run.json").write_text(json.dumps({"run_id": RUN_ID, "processes": [entry]}))


@pytest.mark.parametrize("planted", ["hard link", "symlink", "another file"])
def test_a_forged_record_cannot_pass_off_a_strangers_output_as_the_log(
    conductor, tmp_path, planted
):
    """The stranger leads a session of its own and writes to a file; the forger plants
    that file (or a look-alike) at svc.log. None of it is proof."""
    logs = tmp_path / "logs"
    logs.mkdir()
    output = tmp_path / "stranger.out"
    with output.open("wb") as out:
        stranger = psutil.Popen(
            [PY, "-c", "import time; time.sleep(120)"], stdout=out, start_new_session=True
        )
    try:
        if planted == "hard link":
            os.link(output, logs / "svc.log")
        elif planted == "symlink":
            (logs / "svc.log").symlink_to(output)
        else:
            (logs / "svc.log").write_text(output.read_text())
        _forge(logs, stranger)
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert stranger.is_running()
        assert stranger.status() != psutil.STATUS_ZOMBIE
        assert "does not carry this run's mark" in result.err, result.text
    finally:
        stranger.kill()
        stranger.wait()
