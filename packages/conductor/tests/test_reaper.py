"""Orphans adopted by conductor (child subreaper) are reaped as they die, and the exit
statuses of conductor's own children are never taken from whoever waits for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support import PY, fake, wait_for

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper is Linux"),
]

# COMMAND: runs until the test creates the file named by argv[1], then exits 7.
WAIT_FOR_RELEASE = """
import pathlib, sys, time
release = pathlib.Path(sys.argv[1])
deadline = time.monotonic() + 60
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
raise SystemExit(7)
"""


def _zombie_children(pid: int) -> list[int]:
    found = []
    for child in psutil.Process(pid).children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_adopted_orphans_are_reaped_while_the_command_runs(conductor, config, tmp_path):
    pidfile = tmp_path / "orphans.pid"
    release = tmp_path / "release"
    config(
        {
            "helpers": {
                "command": fake("orphans", "--port", "{port}", "--pidfile", str(pidfile)),
                "port": "auto",
            },
            "dies": {
                "command": fake("die-later", "--port", "{port}", "--text", "1", "--code", "4"),
                "port": "auto",
            },
        }
    )
    # --keep-going: COMMAND must outlive the dying service for this test to mean anything.
    proc = conductor.start(
        "run",
        "--config",
        "conductor.toml",
        "--keep-going",
        "--",
        PY,
        "-c",
        WAIT_FOR_RELEASE,
        str(release),
    )
    try:
        orphans = wait_for(
            lambda: pidfile.exists() and len(lines := pidfile.read_text().split()) == 3 and lines,
            what="three helpers to be forked",
        )
        assert isinstance(orphans, list)
        log = tmp_path / "logs" / "conductor.log"
        wait_for(
            lambda: "while the command ran" in log.read_text(),
            what="the dying service to be reported",
        )
        # While COMMAND still runs: nothing of ours lingers as a zombie under conductor.
        wait_for(
            lambda: (
                not _zombie_children(proc.pid)
                and not {int(pid) for pid in orphans}
                & {c.pid for c in psutil.Process(proc.pid).children()}
            ),
            timeout=5,
            what="adopted orphans to be reaped",
        )
        assert proc.poll() is None, "the run ended too early for this test to mean anything"
    finally:
        release.write_text("go")
    _, err = proc.communicate(timeout=60)
    # The run's own statuses are intact: COMMAND's 7, and the service's own 4.
    assert proc.returncode == 7, err
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["exit_code"] == 7
    assert summary["services"]["dies"]["exit_code"] == 4
    assert summary["services"]["dies"]["status"] == "failed"
    assert summary["services"]["helpers"]["stopped"] == "stopped by SIGTERM"
    assert "reaped adopted orphan(s)" in (tmp_path / "logs" / "conductor.log").read_text()


# Run in a process of its own: becoming a subreaper lasts for the process's lifetime.
NEVER_STEALS = """
import asyncio, os, subprocess, sys, time
from conductor.process import portable
from conductor.process import reaper

def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None

async def main():
    assert portable.set_subreaper(True)
    r = reaper.Reaper()
    assert r.install(asyncio.get_running_loop())
    own = reaper.popen([sys.executable, "-c", "raise SystemExit(5)"])
    helper = reaper.popen(
        [sys.executable, "-c", "import os\\nif os.fork() == 0: print(os.getpid(), flush=True)",
        ], stdout=subprocess.PIPE)
    orphan = int(helper.stdout.readline())
    assert helper.wait() == 0
    deadline = time.monotonic() + 20
    while state(own.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state(own.pid) == "Z"
    while state(orphan) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.01)
    r.reap()
    assert state(orphan) is None, "the adopted orphan was not reaped"
    assert state(own.pid) == "Z", "the reaper took a status that was not its to take"
    assert own.wait() == 5
    r.uninstall()
    print("ok")

asyncio.run(main())
"""


def test_the_reaper_never_takes_the_status_of_a_child_conductor_spawned(tmp_path: Path) -> None:
    result = subprocess.run(
        [PY, "-c", NEVER_STEALS], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.stdout.strip() == "ok", result.stderr
