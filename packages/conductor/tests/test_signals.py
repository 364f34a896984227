"""Ctrl-C, SIGTERM and SIGKILL sent to conductor mid-run: nothing may be left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from support import PY, fake, free_port, kill_conductor_and_its_watchdog, wait_for

pytestmark = pytest.mark.conductor

# COMMAND: says when it is running, and writes down the signal it gets before exiting,
# as pytest does when it prints its summary on Ctrl-C.
TRAP = """
import signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
def handler(sig, frame):
    out.write_text(signal.Signals(sig).name)
    sys.exit(1)
signal.signal(signal.SIGINT, handler)
signal.signal(signal.SIGTERM, handler)
out.with_suffix('.running').write_text('yes')
time.sleep(60)
"""

STUBBORN = """
import signal, sys, time, pathlib
signal.signal(signal.SIGINT, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).with_suffix('.running').write_text('yes')
time.sleep(60)
"""


def _stack(config) -> None:
    config(
        {
            "db": {"command": fake("tcp", "--port", "{port}"), "port": "auto"},
            "api": {
                "command": fake("http", "--port", "{port}"),
                "port": "auto",
                "ready": {"http": "/"},
                "depends_on": ["db"],
            },
        }
    )


def _start(conductor, tmp_path: Path, script: str):
    out = tmp_path / "signal.txt"
    proc = conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", script, str(out))
    wait_for(lambda: out.with_suffix(".running").exists(), what="command to run")
    return proc, out


@pytest.mark.parametrize("whole_group", [True, False], ids=["terminal-ctrl-c", "kill-conductor"])
def test_ctrl_c_reaches_command_first_then_services_stop(conductor, config, tmp_path, whole_group):
    _stack(config)
    proc, out = _start(conductor, tmp_path, TRAP)
    if whole_group:  # what a terminal does: SIGINT to the foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.read_text() == "SIGINT"
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["exit_code"] == 130
    assert all(s["stopped"] == "stopped by SIGTERM" for s in summary["services"].values())


def test_second_ctrl_c_kills_everything_at_once(conductor, config, tmp_path):
    _stack(config)
    proc, _ = _start(conductor, tmp_path, STUBBORN)
    proc.send_signal(signal.SIGINT)
    log = tmp_path / "logs" / "conductor.log"
    wait_for(
        lambda: "SIGINT: passing it to the command" in log.read_text(),
        what="first Ctrl-C to be taken",
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "second SIGINT: killing everything now" in err
    # conductor's own SIGKILL: forced, never a service that failed or was signalled
    services = json.loads((tmp_path / "logs" / "summary.json").read_text())["services"]
    assert {s["outcome"] for s in services.values()} == {"forced"}, services
    assert {s["exit_code"] for s in services.values()} == {128 + signal.SIGKILL}, services
    assert {s["status"] for s in services.values()} == {"ready"}, services
    assert "ignored SIGTERM" not in err


def test_sigterm_stops_everything_with_143(conductor, config, tmp_path):
    _stack(config)
    proc, out = _start(conductor, tmp_path, TRAP)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert out.read_text() == "SIGTERM"


def test_ctrl_c_during_startup_stops_what_started(conductor, config, tmp_path):
    config(
        {
            "db": {"command": fake("tcp", "--port", "{port}"), "port": "auto"},
            "slow": {"command": fake("never"), "port": "auto", "ready_timeout": 60},
        }
    )
    proc = conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    wait_for(
        lambda: (
            "waiting for tcp" in (tmp_path / "logs" / "conductor.log").read_text()
            if (tmp_path / "logs" / "conductor.log").exists()
            else False
        ),
        what="startup",
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err


def test_sigkill_leaves_a_record_that_clean_uses(conductor, config, tmp_path):
    _stack(config)
    proc, _ = _start(conductor, tmp_path, TRAP)
    record = json.loads((tmp_path / "logs" / ".conductor-run.json").read_text())
    pids = [entry["pid"] for entry in record["processes"]]
    assert len(pids) == 2
    # its services and command keep running: what `clean` is for
    kill_conductor_and_its_watchdog(proc, tmp_path / "logs")
    assert all(psutil.pid_exists(pid) for pid in pids)
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert "stopped 3 leftover process(es)" in result.out  # two services and the command
    wait_for(lambda: not conductor.mine(), what="leftovers to go")
    assert conductor.run("clean", "--config", "conductor.toml").out.startswith("nothing left")


def test_clean_finds_an_escaped_daemon_by_its_marker(conductor, config, tmp_path):
    """A setsid daemon is in no recorded group and, once conductor is gone, nobody's
    child: only the environment marker it inherited leads to it."""
    pidfile = tmp_path / "daemon.pid"
    config(
        {
            "svc": {
                "command": fake("daemon", "--port", "{port}", "--pidfile", str(pidfile)),
                "port": "auto",
            }
        }
    )
    proc, _ = _start(conductor, tmp_path, TRAP)
    daemon = psutil.Process(
        int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="daemon pidfile"))
    )
    record = json.loads((tmp_path / "logs" / ".conductor-run.json").read_text())
    assert daemon.pid not in {entry["pgid"] for entry in record["processes"]}
    kill_conductor_and_its_watchdog(proc, tmp_path / "logs")
    assert daemon.is_running()
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert f"pid {daemon.pid}" in result.out
    wait_for(lambda: not daemon.is_running() or daemon.status() == "zombie", what="daemon")


def test_next_run_stops_leftovers_of_a_killed_run_first(conductor, config, tmp_path):
    port_config = {"svc": {"command": fake("tcp", "--port", "{port}"), "port": free_port()}}
    config(port_config)
    proc, _ = _start(conductor, tmp_path, TRAP)
    kill_conductor_and_its_watchdog(proc, tmp_path / "logs")
    # the killed run still holds the fixed port; the next run must free it itself
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    assert "left by an earlier run" in result.err


def test_recycled_pid_in_record_is_not_touched(conductor, config, tmp_path):
    """A record whose pid now belongs to another process (start time differs) is ignored."""
    logs = tmp_path / "logs"
    logs.mkdir()
    bystander = psutil.Popen([PY, "-c", "import time; time.sleep(30)"])
    try:
        (logs / ".conductor-run.json").write_text(
            json.dumps(
                {
                    "run_id": "gone",
                    "processes": [
                        {
                            "service": "x",
                            "pid": bystander.pid,
                            "pgid": bystander.pid,
                            "created": bystander.create_time() - 100,
                        }
                    ],
                }
            )
        )
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert bystander.is_running()
    finally:
        bystander.kill()
        bystander.wait()


def test_marker_scan_matches_whole_entries_only(tmp_path):
    from conductor.process import portable

    marker = f"CONDUCTOR_TEST_SCAN={os.getpid()}-{tmp_path.name}"
    child = psutil.Popen(
        [PY, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        env={**os.environ, "X_FIRST": "1", **dict([marker.split("=", 1)])},
        stdout=subprocess.PIPE,
    )
    try:
        # Until exec, /proc/PID/environ is still ours, not the environment we gave.
        assert child.stdout.readline() == b"up\n"
        assert portable.pids_with_environ([marker]) == [child.pid]
        assert portable.pids_with_environ([marker, "X_FIRST=1"]) == [child.pid]
        assert portable.pids_with_environ([marker[:-1]]) == []
        assert portable.pids_with_environ([marker + "0"]) == []
        assert portable.pids_with_environ([marker, "X_FIRST=2"]) == []
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
