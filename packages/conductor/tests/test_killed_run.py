"""After a SIGKILL of conductor: the folder's report never speaks for the killed run, and
a `clean` that comes while the watchdog is still stopping things waits for it, so nothing
is left when clean returns (issue 18, item 1)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psutil
import pytest

from conductor.rundir.run_record import WATCHDOG_MARGIN, RunDir
from support import PY, fake, gone, wait_for, watchdog_pid

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="the watchdog is POSIX only"),
]

STOP_TIMEOUT = 2.0

# COMMAND: writes its pid, then runs until killed.
RUNNING = """
import os, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(60)
"""


def _run_and_kill(conductor, tmp_path, before_kill=None):
    """Start a run of one stubborn service, SIGKILL conductor while COMMAND runs; the
    pids of what it started (the service's, COMMAND's) and of its watchdog. Just before
    the kill, `before_kill` is given the watchdog's pid."""
    pidfile = tmp_path / "command.pid"
    proc = conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", RUNNING, str(pidfile)
    )
    command = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="the command"))
    logs = tmp_path / "logs"
    record = json.loads((logs / ".conductor-run.json").read_text())
    services = [entry["pid"] for entry in record["processes"]]
    watchdog = watchdog_pid(logs)
    if before_kill is not None:
        assert psutil.Process(watchdog).ppid() == proc.pid  # our own child's child
        before_kill(watchdog)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()  # the orphaned command still holds these pipes
    proc.stderr.close()
    return [*services, command], watchdog


def _run_and_kill_stubborn(conductor, config, tmp_path, before_kill=None):
    """_run_and_kill, on one service that ignores SIGTERM: its watchdog then works for
    the whole STOP_TIMEOUT before SIGKILL."""
    config(
        {
            "stubborn": {
                "command": fake("stubborn", "--port", "{port}"),
                "port": "auto",
                "stop_timeout": STOP_TIMEOUT,
            }
        }
    )
    return _run_and_kill(conductor, tmp_path, before_kill)


def test_a_killed_run_leaves_no_report_of_the_previous_run(conductor, config, tmp_path):
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    first = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert first.code == 0, first.text
    logs = tmp_path / "logs"
    assert json.loads((logs / "summary.json").read_text())["exit_code"] == 0

    started, watchdog = _run_and_kill(conductor, tmp_path)
    wait_for(lambda: gone(watchdog), timeout=15, what="the watchdog to finish")
    assert all(gone(pid) for pid in started)
    # Neither file is the first run's "exit 0": a killed run writes none.
    assert not (logs / "summary.json").exists()
    assert not (logs / "report.html").exists()
    assert "watchdog: conductor (pid" in (logs / "conductor.log").read_text()


def test_clean_while_the_watchdog_works_waits_for_it_and_leaves_nothing(
    conductor, config, tmp_path
):
    started, watchdog = _run_and_kill_stubborn(conductor, config, tmp_path)
    killed = time.monotonic()
    # At once: the watchdog is still waiting out the stubborn service's stop_timeout.
    result = conductor.run("clean", "--config", "conductor.toml")
    returned = time.monotonic()
    assert result.code == 0, result.text
    assert "waited" in result.out, result.text
    assert "watchdog" in result.out, result.text
    left = [pid for pid in started if not gone(pid)]
    assert not left, [psutil.Process(pid).cmdline() for pid in left]
    assert returned - killed < STOP_TIMEOUT + 5, "clean waited past the record's bound"
    wait_for(lambda: gone(watchdog), timeout=5, what="the watchdog to exit")


def test_clean_that_comes_before_the_watchdog_has_said_so_still_waits_for_it(
    conductor, config, tmp_path
):
    """Until the watchdog wakes and writes its pid, the lock it shares still names the
    killed conductor: clean waited only for a holder proven to be the watchdog, so in
    that instant it said "in use by a running conductor" and left the folder (seen in
    CI). Here the instant is made long: the watchdog is stopped before conductor dies."""
    started, watchdog = _run_and_kill_stubborn(
        conductor, config, tmp_path, before_kill=lambda pid: os.kill(pid, signal.SIGSTOP)
    )
    lock = tmp_path / "logs" / ".conductor.lock"
    assert lock.read_bytes() != str(watchdog).encode()
    clean = conductor.start("clean", "--config", "conductor.toml")
    try:
        time.sleep(0.5)  # not a readiness wait: how long the watchdog stays asleep
        assert clean.poll() is None, clean.communicate()
    finally:
        os.kill(watchdog, signal.SIGCONT)
    out, err = clean.communicate(timeout=STOP_TIMEOUT + 15)
    assert clean.returncode == 0, out + err
    assert "waited" in out, out + err
    assert all(gone(pid) for pid in started)
    wait_for(lambda: gone(watchdog), timeout=5, what="the watchdog to exit")


def test_a_run_that_meets_a_working_watchdog_is_told_so(conductor, config, tmp_path):
    """issue 19, item 3: the busy message names the watchdog, not "another run"."""
    started, watchdog = _run_and_kill_stubborn(conductor, config, tmp_path)
    # It writes its pid alone, from the file's start (it once wrote at conductor's
    # offset: NUL bytes, then prose, which the busy message printed padded).
    lock = tmp_path / "logs" / ".conductor.lock"
    wait_for(lambda: lock.read_bytes() == str(watchdog).encode(), what="the watchdog's pid")
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert f"the watchdog of a killed conductor (pid {watchdog})" in result.err, result.text
    assert "conductor clean" in result.err
    wait_for(lambda: gone(watchdog), timeout=15, what="the watchdog to finish")
    assert all(gone(pid) for pid in started)


def _forge_a_dead_run(logs):
    """A record whose conductor is gone (no pid that high) and whose one entry has a
    stop_timeout of a million seconds: the bound a forged record would make clean wait.
    The conductor's pid."""
    logs.mkdir()
    dead = 2**22 + 1
    entry = {"service": "x", "pid": 1, "pgid": 1, "created": 1.0, "stop_timeout": 1e6}
    record = {"run_id": "ab" * 16, "conductor_pid": dead, "processes": [entry]}
    (logs / ".conductor-run.json").write_text(json.dumps(record))
    return dead


def test_clean_never_waits_on_a_lock_that_no_watchdog_holds(conductor, tmp_path, bystander):
    """A forged record (its conductor gone, a stop_timeout of a million seconds) beside a
    lock that some other process holds, naming nobody: clean says the folder is busy
    after the margin at most, instead of waiting out the record's bound (found attacking
    the wait)."""
    logs = tmp_path / "logs"
    _forge_a_dead_run(logs)
    holder = bystander(
        code=(
            "import fcntl, time\n"
            f"lock = open({str(logs / '.conductor.lock')!r}, 'w')\n"
            "fcntl.flock(lock, fcntl.LOCK_EX)\n"
            "print('up', flush=True)\n"
            "time.sleep(120)\n"
        )
    )
    result = conductor.run("clean", "--logs-dir", "logs", timeout=20)
    assert result.code == 2, result.text
    assert "still in use" in result.err
    assert result.seconds < 10
    assert holder.is_running()


def test_a_lock_caught_between_its_truncate_and_its_pid_gets_the_margin(tmp_path, bystander):
    """A lock is rewritten by truncating it, then writing the pid (as the watchdog does
    when it takes over its killed conductor's lock): read in between, it names nobody.
    With the record's conductor dead, that is still worth the margin. Before: no bound
    at all, so a clean that read it that instant gave up at once ("a running conductor"),
    as a loaded CI machine showed in the test below."""
    logs = tmp_path / "logs"
    _forge_a_dead_run(logs)
    bystander(
        code=(
            "import fcntl, time\n"
            f"lock = open({str(logs / '.conductor.lock')!r}, 'w')\n"  # truncated, no pid
            "fcntl.flock(lock, fcntl.LOCK_EX)\n"
            "print('up', flush=True)\n"
            "time.sleep(120)\n"
        )
    )
    assert RunDir(logs).watchdog_bound() == WATCHDOG_MARGIN


def test_a_lock_that_names_the_dead_conductor_forever_is_waited_for_briefly(
    conductor, tmp_path, bystander
):
    """A process holding the lock and writing the record's dead conductor's pid into it,
    over and over, as the watchdog that never says it is there: clean gives it the margin
    only (3 s), not the record's bound of a million seconds; and a Ctrl-C while it waits
    ends clean at once, in one line that says to clean again, and 130. Before: the Ctrl-C
    was 130 with no word at all."""
    logs = tmp_path / "logs"
    dead = _forge_a_dead_run(logs)
    holder = bystander(
        code=(
            "import fcntl, os, time\n"
            f"fd = os.open({str(logs / '.conductor.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('up', flush=True)\n"
            "while True:\n"
            f"    os.ftruncate(fd, 0); os.pwrite(fd, b'{dead}', 0); time.sleep(0.01)\n"
        )
    )
    result = conductor.run("clean", "--logs-dir", "logs", timeout=20)
    assert result.code == 2, result.text
    assert "still in use by the watchdog of a killed run" in result.err
    assert result.seconds < 10
    clean = conductor.start("clean", "--logs-dir", "logs", sigint=True)
    time.sleep(1.5)  # in its wait: the lock is busy, the margin 3 s
    clean.send_signal(signal.SIGINT)
    _, err = clean.communicate(timeout=10)
    assert clean.returncode == 130, err
    (line,) = err.strip().splitlines()
    assert "interrupted" in line
    assert "clean again" in line
    assert holder.is_running()
