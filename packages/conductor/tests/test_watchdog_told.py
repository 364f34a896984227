"""The watchdog learns what to stop from conductor, over the pipe only conductor writes,
not from disk or /proc: a SIGKILLed run leaves nothing, even when a service rewrote its
environment over the run's mark (redis-server's process title) and even when the logs
folder, record and all, was moved or deleted first (issue 18, item 1)."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time

import psutil
import pytest

from support import PY, fake, gone, needs_postgres, wait_for, watchdog_pid

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="the watchdog is POSIX only"),
]

STOP_TIMEOUT = 1.0
REDIS = shutil.which("redis-server")

# COMMAND: writes its pid, then runs until killed.
RUNNING = """
import os, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(120)
"""


def _start(conductor, tmp_path):
    """A run of the config in tmp_path, with COMMAND running; its conductor, the pids
    of what it started (services and COMMAND) and its watchdog's pid."""
    pidfile = tmp_path / "command.pid"
    proc = conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", RUNNING, str(pidfile)
    )
    command = int(
        wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=60, what="the command")
    )
    logs = tmp_path / "logs"
    record = json.loads((logs / ".conductor-run.json").read_text())
    started = [entry["pid"] for entry in record["processes"]]
    return proc, [*started, command], watchdog_pid(logs)


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()  # the orphaned command still holds these pipes
    proc.stderr.close()
    return time.monotonic()


def _all_gone_within(pids, since, seconds):
    while not all(gone(pid) for pid in pids):
        left = [pid for pid in pids if not gone(pid)]
        assert time.monotonic() - since <= seconds, [psutil.Process(p).cmdline() for p in left]
        time.sleep(0.01)


@pytest.mark.skipif(
    REDIS is None, reason="not installed: redis-server (apt-get install redis-server)"
)
@needs_postgres
def test_sigkill_leaves_neither_a_real_redis_server_nor_postgres(conductor, config, tmp_path):
    config(
        {
            "cache": {
                "command": [REDIS, "--port", "{port}", "--bind", "127.0.0.1", "--save", ""],
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            },
            "db": {"kind": "postgres", "stop_timeout": STOP_TIMEOUT},
        }
    )
    proc, pids, watchdog = _start(conductor, tmp_path)
    cache = pids[0] if "redis" in " ".join(psutil.Process(pids[0]).cmdline()) else pids[1]
    # What made it unprovable: the mark is no longer in its /proc environment.
    assert "CONDUCTOR_RUN_ID" not in psutil.Process(cache).environ()
    killed = _kill(proc)
    _all_gone_within(pids, killed, STOP_TIMEOUT + 1)
    wait_for(lambda: gone(watchdog), timeout=10, what="the watchdog to exit")


@pytest.mark.parametrize("how", ["moved", "deleted"])
def test_sigkill_after_the_logs_folder_went_leaves_nothing(conductor, config, tmp_path, how):
    config(
        {
            "plain": {
                "command": fake("tcp", "--port", "{port}"),
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            },
            # no mark in its environment either: only what conductor told proves it
            "blank": {
                "command": ["env", "-i", *fake("stubborn", "--port", "{port}")],
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            },
        }
    )
    proc, pids, watchdog = _start(conductor, tmp_path)
    logs = tmp_path / "logs"
    if how == "moved":
        logs.rename(tmp_path / "elsewhere")
    else:
        shutil.rmtree(logs)
    killed = _kill(proc)
    _all_gone_within(pids, killed, STOP_TIMEOUT + 1)
    wait_for(lambda: gone(watchdog), timeout=10, what="the watchdog to exit")
    assert not logs.exists(), "the watchdog made the gone folder anew"
    if how == "moved":
        log = (tmp_path / "elsewhere" / "conductor.log").read_text()
        assert "watchdog: stopped 3 process(es)" in log, log
