"""Collecting adopted orphans as they die, and never a status that belongs to someone.

As Linux child subreaper (the CLI only), conductor becomes the parent of every orphan
among its descendants: a double-forked helper, each of a browser's zygotes. An orphan
that exits stays a zombie until its parent waits for it, and asyncio waits only for
the pids it started, one by one; so without this, every helper that died while COMMAND
ran (or for the hours `conductor up` runs) stayed a zombie until teardown.

On SIGCHLD, the reaper lists conductor's zombie children and waits for exactly those
that conductor did not spawn itself. Services, COMMAND, probes and the watchdog are
waited for by whoever started them; a status taken from under them would read as 255
(asyncio) or 0 (subprocess). So every child conductor spawns goes through `spawning()`
(or `create_subprocess_exec` / `popen` here), which marks it as conductor's own before
the event loop can run the reaper, and while a spawn is under way the reaper waits.
A blocking `subprocess.run` on the loop's own thread (pg_config at plan time) needs
none of that: it has waited for its child before the loop can run the reaper. One in
a worker thread would not be safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from conductor.files import logs
from conductor.process import procfs
from conductor.process.signals import child_mask

_active: Reaper | None = None


def _children(me: int) -> list[int]:
    """Our children, from every thread's `children` list; a full /proc scan where the
    kernel has no such list."""
    found = procfs.children(me)
    return procfs.children_by_scan(me) if found is None else found


class Reaper:
    """Waits for orphans adopted by this (subreaper) process as they die."""

    def __init__(self) -> None:
        self._own: dict[int, int] = {}  # pid -> start time, against a recycled pid
        self._spawning = 0
        self._deferred = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Reap on every SIGCHLD from now on; False (and nothing done) off Linux, or
        when another reaper is active in this process."""
        global _active
        if not sys.platform.startswith("linux") or _active is not None:
            return False
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self._loop = loop
        _active = self
        return True

    def uninstall(self) -> None:
        global _active
        if _active is not self or self._loop is None:
            return
        with contextlib.suppress(RuntimeError, ValueError):  # loop closed, not main thread
            self._loop.remove_signal_handler(signal.SIGCHLD)
        _active = None
        self._loop = None

    def own(self, pid: int) -> None:
        """`pid` is a child conductor spawned: its status is its spawner's to take."""
        stat = procfs.stat(pid)
        if stat is not None:  # else it has already been waited for
            self._own[pid] = stat.start_ticks

    def reap(self) -> list[int]:
        """Wait for every zombie child that is not conductor's own; the pids reaped."""
        if self._spawning:
            # A child may be forked but not yet marked as ours: look again once it is.
            self._deferred = True
            return []
        me = os.getpid()
        children = set(_children(me))
        reaped = []
        for pid in children:
            stat = procfs.stat(pid)
            if stat is None or stat.state != "Z":
                continue
            if self._own.get(pid) == stat.start_ticks:
                continue  # ours, for whoever spawned it to wait for
            with contextlib.suppress(ChildProcessError, OSError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped.append(pid)
        # Forget own children that have been waited for (their pid may come back).
        for pid in [pid for pid in self._own if pid not in children]:
            del self._own[pid]
        if reaped:
            logs.logger.debug("reaped adopted orphan(s): %s", " ".join(map(str, reaped)))
        return reaped

    @contextlib.contextmanager
    def spawning(self) -> Iterator[Callable[[int], None]]:
        self._spawning += 1
        try:
            yield self.own
        finally:
            self._spawning -= 1
            if not self._spawning and self._deferred:
                self._deferred = False
                if self._loop is not None:
                    self._loop.call_soon(self.reap)


@contextlib.contextmanager
def spawning() -> Iterator[Callable[[int], None]]:
    """Wrap every spawn of a child conductor will wait for, and call the function it
    gives with the child's pid:

        with reaper.spawning() as own:
            proc = await asyncio.create_subprocess_exec(...)
            own(proc.pid)
    """
    reaper = _active
    if reaper is None:
        yield lambda pid: None
        return
    with reaper.spawning() as own:
        yield own


def own_pids() -> set[int]:
    """The children conductor spawned itself and has not yet seen waited for."""
    return set(_active._own) if _active is not None else set()


async def create_subprocess_exec(
    program: str, *args: str, **kwargs: Any
) -> asyncio.subprocess.Process:
    """asyncio.create_subprocess_exec, with the child marked as conductor's own."""
    with spawning() as own:
        proc = await asyncio.create_subprocess_exec(program, *args, **kwargs, **child_mask())
        own(proc.pid)
    return proc


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen, with the child marked as conductor's own."""
    with spawning() as own:
        proc = subprocess.Popen(argv, **kwargs, **child_mask())
        own(proc.pid)
    return proc
