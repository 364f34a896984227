"""The browser suite's end-of-session check: a zombie is gone, a live helper is named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.browser.processes import MARKER, BrowserProcesses

# Stands in for conductor, the subreaper: it starts a helper (as Chromium's helpers
# end up adopted by conductor) and does not reap it until told to finish.
ADOPTIVE_PARENT = textwrap.dedent(
    """
    import subprocess, sys
    helper = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    print(helper.pid, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    helper.wait()
    """
)
HELPER = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)"


@pytest.fixture
def adoptive_parent(tmp_path: Path) -> Iterator[tuple[psutil.Process, Path]]:
    """A marked helper under a parent that is not us; it exits when the file appears."""
    stop = tmp_path / "stop"
    with subprocess.Popen(
        [sys.executable, "-c", ADOPTIVE_PARENT, HELPER, str(stop)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        assert parent.stdin is not None
        try:
            yield psutil.Process(int(parent.stdout.readline())), stop
        finally:
            stop.touch()
            parent.stdin.close()
            parent.wait(timeout=30)


def wait_for_zombie(proc: psutil.Process, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {proc.pid} did not exit"
        time.sleep(0.01)


async def test_a_zombie_helper_counts_as_gone_at_once(
    adoptive_parent: tuple[psutil.Process, Path],
) -> None:
    helper, stop = adoptive_parent
    processes = BrowserProcesses()
    processes.note(helper.parent())
    assert processes.running() == [helper]
    stop.touch()
    wait_for_zombie(helper)  # exited; its parent has not reaped it

    started = time.monotonic()
    assert await processes.outliving(timeout=5) == []
    assert time.monotonic() - started < 1.0


async def test_a_marked_helper_that_was_never_noted_is_named() -> None:
    """Like a helper that double-forked away before the browser's processes were
    listed: found by the marker in its environment."""
    processes = BrowserProcesses()
    processes.note()
    helper = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import time; print('running', flush=True); time.sleep(60)",
        env={**os.environ, MARKER: processes.marker},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        # Once it prints, it has exec'd: /proc/PID/environ holds the marker.
        assert helper.stdout is not None
        assert await asyncio.wait_for(helper.stdout.readline(), 30) == b"running\n"
        running = await processes.outliving(timeout=0.3)
        assert [line.split(":")[0] for line in running] == [f"pid {helper.pid}"]
    finally:
        helper.kill()
        await helper.wait()
    assert await processes.outliving(timeout=5) == []


def test_processes_running_before_the_session_are_not_the_browsers() -> None:
    """A stack the tests started themselves is no browser process, nor what it spawns."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as service:
        processes = BrowserProcesses()
        processes.note()
        assert service.pid not in [p.pid for p in processes.running()]
        assert service.stdin is not None
        service.stdin.close()
