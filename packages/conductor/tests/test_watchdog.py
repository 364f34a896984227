"""The watchdog: when conductor is SIGKILLed, everything it started is stopped within
stop_timeout + 1 s, with no `clean`; a normal run leaves no watchdog and never takes it
for a stray."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from support import PY, fake, gone, wait_for, watchdog_pid

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="the watchdog is POSIX only"),
]

STOP_TIMEOUT = 1.0

# COMMAND: writes its pid, then runs until the file named by argv[1] exists.
RUNNING = """
import os, pathlib, sys, time
release = pathlib.Path(sys.argv[1])
release.with_suffix('.pid').write_text(str(os.getpid()))
deadline = time.monotonic() + 60
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def _prepared(watchdog: int) -> bool:
    """The watchdog has loaded its cleanup code (psutil's extension is mapped in)."""
    try:
        return "_psutil_linux" in Path(f"/proc/{watchdog}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize(
    "prepared", [False, True], ids=["killed-at-once", "killed-once-the-watchdog-prepared"]
)
def test_sigkill_of_conductor_stops_everything_within_stop_timeout_plus_1s(
    conductor, config, tmp_path, prepared
):
    pidfile = tmp_path / "daemon.pid"
    release = tmp_path / "release"
    config(
        {
            "stubborn": {
                "command": fake("stubborn", "--port", "{port}"),
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            },
            "escapes": {
                "command": fake("daemon", "--port", "{port}", "--pidfile", str(pidfile)),
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            },
        }
    )
    proc = conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", RUNNING, str(release)
    )
    command = int(
        wait_for(
            lambda: (
                release.with_suffix(".pid").exists() and release.with_suffix(".pid").read_text()
            ),
            what="the command to run",
        )
    )
    daemon = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="the daemon"))
    logs = tmp_path / "logs"
    record = json.loads((logs / ".conductor-run.json").read_text())
    services = [entry["pid"] for entry in record["processes"]]
    assert len(services) == 2
    assert os.getsid(daemon) not in services  # escaped its service's session and group
    watchdog = watchdog_pid(logs)
    everything = [*services, daemon, command]
    assert not any(gone(pid) for pid in [*everything, watchdog])
    if prepared:  # a run longer than PREPARE_AFTER: the watchdog loads its cleanup code early
        wait_for(lambda: _prepared(watchdog), what="the watchdog to prepare")

    proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    proc.stdout.close()  # the orphaned command still holds these pipes
    proc.stderr.close()
    while not all(gone(pid) for pid in everything):
        assert time.monotonic() - killed <= STOP_TIMEOUT + 1, [
            pid for pid in everything if not gone(pid)
        ]
        time.sleep(0.01)
    # Then the watchdog writes its line, removes the record and exits.
    wait_for(lambda: gone(watchdog), timeout=10, what="the watchdog to exit")
    log = (logs / "conductor.log").read_text()
    assert "watchdog: conductor (pid" in log
    assert "watchdog: stopped 4 process(es)" in log, log
    assert not (logs / ".conductor-run.json").exists()
    assert not (logs / ".conductor.lock").exists()  # the watchdog held it, and removed it
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert result.out.startswith("nothing left"), result.text


def test_a_normal_run_leaves_no_watchdog_and_does_not_take_it_for_a_stray(
    conductor, config, tmp_path
):
    release = tmp_path / "release"
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    proc = conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", RUNNING, str(release)
    )
    try:
        wait_for(lambda: release.with_suffix(".pid").exists(), what="the command to run")
        watchdog = psutil.Process(watchdog_pid(tmp_path / "logs"))
        # conductor's own child, in a session of its own, carrying no run marker.
        assert watchdog.ppid() == proc.pid
        assert os.getsid(watchdog.pid) == watchdog.pid
        assert "CONDUCTOR_RUN_ID" not in watchdog.environ()
    finally:
        release.write_text("go")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert gone(watchdog.pid)  # already when conductor has exited: no polling
    assert "leftover" not in err
    assert "leftover" not in (tmp_path / "logs" / "conductor.log").read_text()
    assert "watchdog: conductor" not in (tmp_path / "logs" / "conductor.log").read_text()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_the_watchdog_never_writes_through_what_is_planted_at_conductor_log(tmp_path, kind):
    """It adds to the run's own conductor.log as the event log does (safe_io.append_to):
    a link there is not written through, and a FIFO fails at once instead of blocking
    the run's start for good (before, its own open followed the link and, on a FIFO,
    waited for a reader)."""
    from conductor.rundir import watchdog

    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim"
    if kind == "symlink":
        victim.write_text("precious\n")
        (logs / "conductor.log").symlink_to(victim)
    else:
        os.mkfifo(logs / "conductor.log")
    lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        started = watchdog.start(logs, "0" * 32, lock)
    finally:
        os.close(lock)
    assert started is None
    if kind == "symlink":
        assert victim.read_text() == "precious\n"
