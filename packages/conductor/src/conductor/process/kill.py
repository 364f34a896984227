"""The one way conductor stops processes.

A service's teardown, COMMAND's stop, the second Ctrl-C, the final sweep and `clean`
each build a `Targets` (what to stop, every part of it proven the run's by ownership.py)
and hand it to `stop()` or `kill_now()`. What differs on Windows stays in portable.py.

`stop()`: the stop signal to every group and marked stray, SIGKILL to whatever is left
after the grace period (the caller warns), and a wait until all of it is gone and
reaped; callers run it shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from conductor.process import ownership, portable
from conductor.process.subreaper import Subreaper

if TYPE_CHECKING:
    import psutil
else:
    from conductor.process.lazy_psutil import psutil

T = TypeVar("T")

POLL = 0.005
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the kernel to finish the job


@dataclass
class Leader:
    """A process conductor started: its own child (`child`), or one proved from a
    record (`started` and the mark). `group`: it leads the group it is signalled with."""

    pid: int
    started: float | None
    group: bool
    child: asyncio.subprocess.Process | None = None

    def alive(self) -> bool:
        """The pid still names this process and it has not exited."""
        if self.child is not None and self.child.returncode is not None:
            return False
        return portable.process_alive(self.pid, self.started, ownership.START_SLACK)

    def send(self, sig: int) -> None:
        if not self.group:
            if self.alive():
                portable.signal_process(self.pid, sig)
        elif self.alive():
            portable.signal_group(self.pid, sig)
        else:
            # The leader is gone: the group's number might in time name a stranger's
            # group, so signal its members one by one, each checked by start time.
            _signal_all(portable.group_members(self.pid), sig)

    def remaining(self) -> bool:
        """Anything of this leader (itself, or its group) is still alive."""
        return self.alive() or (self.group and portable.group_alive(self.pid))


@dataclass
class Targets:
    """What one stop acts on: leaders (and their groups), plus what carries the mark
    (of one service, or of the whole run when `service` is None), plus, for the CLI's
    final sweep, adopted orphans. `exclude`: pids that are none of this stop's business
    (conductor's own children that asyncio reaps)."""

    mark: ownership.Mark
    service: str | None = None
    leaders: list[Leader] = field(default_factory=list)
    subreaper: Subreaper | None = None
    exclude: Collection[int] = ()
    strays: dict[int, psutil.Process] = field(default_factory=dict)
    adopted: set[int] = field(default_factory=set)
    # `strays` are a scan the caller made for many Targets at once (a teardown's
    # ownership.marked_by_service): the first scan() is that one, not another.
    prescanned: bool = False

    def scan(self) -> None:
        """Look for what carries the mark (and for adopted orphans) now."""
        if self.prescanned:
            self.prescanned = False
            return
        skip = {*self.exclude, *(leader.pid for leader in self.leaders)}
        for proc in ownership.marked(self.mark, self.service, skip):
            self.strays.setdefault(proc.pid, proc)
        if self.subreaper is not None:
            for proc in self.subreaper.adopted(skip):
                self.strays.setdefault(proc.pid, proc)
                self.adopted.add(proc.pid)

    def send(self, sig: int) -> None:
        for leader in self.leaders:
            leader.send(sig)
        _signal_all(self.strays.values(), sig)

    def alive(self) -> bool:
        return any(leader.remaining() for leader in self.leaders) or bool(
            _alive(self.strays.values())
        )

    def describe(self) -> list[str]:
        """'pid N (command line)' for each leader and stray still alive."""
        procs = []
        for leader in self.leaders:
            if leader.alive():
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(leader.pid))
        names = []
        for proc in _alive([*procs, *self.strays.values()]):
            try:
                names.append(f"pid {proc.pid} ({' '.join(proc.cmdline())[:80] or proc.name()})")
            except psutil.Error:
                names.append(f"pid {proc.pid}")
        return names

    async def wait(self, timeout: float) -> bool:
        """Until everything is gone (True) or `timeout` passed (False). Children are
        awaited, so asyncio collects their exit status."""
        deadline = time.monotonic() + timeout
        for leader in self.leaders:
            if leader.child is None or leader.child.returncode is not None:
                continue
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    await leader.child.wait()
            except TimeoutError:
                return False
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    def reap(self) -> None:
        """Collect adopted orphans, so none lingers as a zombie; conductor's own children
        are asyncio's to collect and never in `adopted`."""
        for pid in self.adopted:
            portable.reap(pid)


@dataclass(frozen=True)
class Stopped:
    signalled: bool  # something was alive, and got the signal
    forced: bool  # SIGKILL was needed after the grace period
    seconds: float
    found: list[str]  # strays that were alive when the stop began (with describe=True)


async def stop(targets: Targets, sig: int, grace: float, *, describe: bool = False) -> Stopped:
    """`sig` to everything in `targets`, SIGKILL to what is left after `grace`; returns
    once all of it is gone (or KILL_WAIT after SIGKILL) and adopted orphans are reaped."""
    began = time.monotonic()
    targets.scan()
    found = targets.describe() if describe else []
    forced = False
    signalled = targets.alive()
    if signalled:
        targets.send(sig)
        if not await targets.wait(grace):
            forced = True
            targets.scan()  # what got the mark meanwhile (forked during the grace)
            targets.send(signal.SIGKILL)
            await targets.wait(KILL_WAIT)
    targets.reap()
    return Stopped(signalled, forced, time.monotonic() - began, found)


def kill_now(targets: Targets) -> None:
    """SIGKILL everything in `targets` at once, without waiting (the second Ctrl-C)."""
    targets.scan()
    targets.send(signal.SIGKILL)


def _alive(procs: Collection[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _signal_all(procs: Collection[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run `awaitable` to the end even if we are cancelled meanwhile, then re-raise the
    cancellation: teardown must never be cut short."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
