"""Starting a service in its own process group and stopping everything it became.

A service's stdout and stderr are the log file itself (no pipe), so it can never block
on output and no end-of-file is ever awaited. Every service carries an environment
mark, so descendants that escape its group (setsid daemons) are still found; stopping
goes through kill.py, like every other stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conductor import compat, kill, owned, reaper


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


async def stop_service(
    proc: asyncio.subprocess.Process,
    *,
    started: float | None,
    mark: owned.Mark,
    service: str,
    stop_signal: signal.Signals,
    timeout: float,
) -> StopResult:
    """Polite signal to the group and to marked strays, then SIGKILL after `timeout`.

    Returns only when the leader has been waited for and nothing of the service is left.
    """
    already = proc.returncode is not None
    leader = kill.Leader(proc.pid, started, group=True, child=proc)
    stopped = await kill.stop(kill.Targets(mark, service, [leader]), stop_signal, timeout)
    if stopped.forced:
        how = f"ignored {stop_signal.name} for {timeout:g}s, killed"
    elif already:
        how = describe_exit(proc.returncode)
        if not stopped.signalled:
            how = f"had {how}"
    else:
        how = f"stopped by {stop_signal.name}"
    return StopResult(how, stopped.seconds, exit_status(proc.returncode), forced=stopped.forced)
