"""Starting a service in its own process group and stopping everything it became.

A service's stdout and stderr are the log file itself (no pipe), so it can never block
on output and no end-of-file is ever awaited. Every service carries an environment
marker, so descendants that escape its group (setsid daemons) are still found.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conductor import compat, reaper

if TYPE_CHECKING:
    import psutil
else:
    from conductor._lazy import psutil

MARKER_RUN = "CONDUCTOR_RUN_ID"
MARKER_SERVICE = "CONDUCTOR_SERVICE"
POLL = 0.005


@dataclass(frozen=True)
class StopResult:
    """How a service ended: `how` is for people, the rest for summary.json."""

    how: str
    seconds: float
    exit_code: int | None
    forced: bool = False


def preload() -> None:
    """Import psutil now (in a worker thread), so teardown does not pay for it."""
    import psutil as _  # noqa: F401  (lands in sys.modules; the lazy proxy finds it there)


async def spawn(
    argv: Iterable[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_fd: int,
    run_as: str | None = None,
) -> asyncio.subprocess.Process:
    """Start `argv` (never through a shell) with stdout and stderr going to `log_fd`."""
    extra = compat.run_as_kwargs(run_as) if run_as else {}
    program, *args = argv
    return await reaper.create_subprocess_exec(
        program,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=dict(env),
        **compat.new_group_kwargs(),
        **extra,
    )


def exit_status(returncode: int | None) -> int | None:
    """A shell-style status: 128 + N for death by signal N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def marked_processes(run_id: str, service: str | None = None) -> list[psutil.Process]:
    """Live processes whose environment carries this run's marker (and service, if given)."""
    entries = [f"{MARKER_RUN}={run_id}"]
    if service is not None:
        entries.append(f"{MARKER_SERVICE}={service}")
    me = os.getpid()
    found = []
    for pid in compat.pids_with_environ(entries):
        if pid == me:
            continue
        try:
            proc = psutil.Process(pid)
            # Read again through the handle we will signal: the pid may have been
            # recycled since the scan.
            if proc.environ().get(MARKER_RUN) != run_id:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.append(proc)
    return found


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue


async def stop_service(
    proc: asyncio.subprocess.Process,
    *,
    run_id: str,
    service: str,
    stop_signal: signal.Signals,
    timeout: float,
) -> StopResult:
    """Polite signal to the group and to marked strays, then SIGKILL after `timeout`.

    Returns only when the leader has been waited for and nothing of the service is left.
    """
    started = time.monotonic()
    pgid = proc.pid
    already = proc.returncode is not None
    strays = marked_processes(run_id, service)
    if already and not strays and not compat.group_alive(pgid):
        return StopResult(
            f"had {describe_exit(proc.returncode)}", 0.0, exit_status(proc.returncode)
        )
    compat.signal_group(pgid, stop_signal)
    _signal_all(strays, stop_signal)
    if await _wait_gone(proc, pgid, strays, timeout):
        how = describe_exit(proc.returncode) if already else f"stopped by {stop_signal.name}"
        return StopResult(how, time.monotonic() - started, exit_status(proc.returncode))
    compat.signal_group(pgid, signal.SIGKILL)
    _signal_all(_alive(strays) + marked_processes(run_id, service), signal.SIGKILL)
    await _wait_gone(proc, pgid, strays, 5.0)
    return StopResult(
        f"ignored {stop_signal.name} for {timeout:g}s, killed",
        time.monotonic() - started,
        exit_status(proc.returncode),
        forced=True,
    )


async def _wait_gone(
    proc: asyncio.subprocess.Process, pgid: int, strays: list[psutil.Process], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        return False
    while compat.group_alive(pgid) or _alive(strays):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


def kill_now(pgids: Iterable[int], run_id: str) -> None:
    """The second Ctrl-C: SIGKILL every group and every marked process, no waiting."""
    for pgid in pgids:
        compat.signal_group(pgid, signal.SIGKILL)
    _signal_all(marked_processes(run_id), signal.SIGKILL)


async def sweep(
    run_id: str, adopted_from: int | None = None, exclude: set[int] | None = None
) -> list[str]:
    """Kill whatever is left of a run: marked processes and, when we are a subreaper,
    our adopted descendants. Returns a description of each one found."""
    exclude = exclude or set()
    found: dict[int, psutil.Process] = {p.pid: p for p in marked_processes(run_id)}
    descendants: list[psutil.Process] = []
    if adopted_from is not None:
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(adopted_from).children(recursive=True)
        for child in descendants:
            if child.pid not in exclude:
                found.setdefault(child.pid, child)
    victims = _alive(found.values())
    names = []
    for proc in victims:
        try:
            names.append(f"pid {proc.pid} ({' '.join(proc.cmdline())[:80] or proc.name()})")
        except psutil.Error:
            names.append(f"pid {proc.pid}")
    _signal_all(victims, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _alive(victims) and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
    # Orphans re-parent to us as subreaper and linger as zombies until collected. Any
    # of them was a descendant above (an orphan of a killed victim included); waitpid
    # on a pid that is not our child is a harmless ChildProcessError.
    for child in descendants:
        if child.pid not in exclude:
            compat.reap(child.pid)
    return names
