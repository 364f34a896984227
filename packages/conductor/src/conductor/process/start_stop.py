"""Starting a service in its own process group and stopping everything it became.

A service's stdout and stderr are the log file itself (no pipe), so it can never block
on output and no end-of-file is ever awaited. Every service carries an environment
mark, so descendants that escape its group (setsid daemons) are still found; stopping
goes through kill.py, like every other stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from conductor.process import kill, ownership, portable, reaper

if TYPE_CHECKING:
    import psutil

# How a service's process ended, as summary.json's `outcome` says it: stopped by the
# stop signal conductor sent; forced (conductor's SIGKILL: stop_timeout ran out, or a
# second Ctrl-C); exited by itself (with its exit status); signalled by a signal
# conductor did not send (a crash: SIGSEGV, the OOM killer's SIGKILL).
Ending = Literal["stopped", "forced", "exited", "signalled"]


@dataclass(frozen=True)
class StopResult:
    """How a service ended: `how` is for people and nothing reads it back; `ending`,
    `exit_code` and `signal` are the facts summary.json and report.html are made of."""

    how: str
    ending: Ending
    seconds: float
    exit_code: int | None
    signal: str | None  # the name of the signal that ended the leader, if one did

    @property
    def forced(self) -> bool:
        return self.ending == "forced"


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
    extra = portable.run_as_kwargs(run_as) if run_as else {}
    program, *args = argv
    return await reaper.create_subprocess_exec(
        program,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=dict(env),
        **portable.new_group_kwargs(),
        **extra,
    )


def exit_status(returncode: int | None) -> int | None:
    """A shell-style status: 128 + N for death by signal N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def exit_signal(returncode: int | None) -> str | None:
    """The name of the signal a process died by ("SIGSEGV"), None if it did not."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    name = exit_signal(returncode)
    return f"killed by {name}" if name else f"exited with status {returncode}"


def ending(
    returncode: int | None, *, gone: bool, forced: bool, stop_signal: signal.Signals
) -> Ending:
    """Who ended the process: conductor (its stop signal, or SIGKILL when `forced`), or
    the process itself or someone else (it was `gone` before the stop signal was sent,
    or it died by a signal other than that one)."""
    if forced:
        return "forced"
    if gone:
        return "signalled" if exit_signal(returncode) else "exited"
    if exit_signal(returncode) and returncode != -stop_signal:
        return "signalled"  # it crashed just as the stop began, before it was reaped
    return "stopped"


async def stop_service(
    proc: asyncio.subprocess.Process,
    *,
    started: float | None,
    mark: ownership.Mark,
    service: str,
    stop_signal: signal.Signals,
    timeout: float,
    killed: bool = False,
    strays: list[psutil.Process] | None = None,
) -> StopResult:
    """Polite signal to the group and to marked strays, then SIGKILL after `timeout`.
    `killed`: conductor has sent the whole run SIGKILL already (a second Ctrl-C).
    `strays`: the service's marked processes from the teardown's one scan (else its own).

    Returns only when the leader has been waited for and nothing of the service is left.
    """
    leader = kill.Leader(proc.pid, started, group=True, child=proc)
    gone = not leader.alive()  # dead already, though perhaps not yet reaped
    targets = kill.Targets(mark, service, [leader])
    if strays is not None:
        targets.strays = {proc.pid: proc for proc in strays}
        targets.prescanned = True
    stopped = await kill.stop(targets, stop_signal, timeout)
    if proc.returncode is None:
        # kill.stop waits only for what was alive: a leader that died unreaped is
        # collected here, for its exit status.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(kill.KILL_WAIT):
                await proc.wait()
    code = proc.returncode
    forced = stopped.forced or (killed and code == -signal.SIGKILL)
    end = ending(code, gone=gone, forced=forced, stop_signal=stop_signal)
    if stopped.forced:
        how = f"ignored {stop_signal.name} for {timeout:g}s, killed"
    elif forced:
        how = "killed at once by SIGKILL"
    elif end == "stopped":
        how = f"stopped by {stop_signal.name}"
    else:
        how = ("had been " if end == "signalled" else "had ") + describe_exit(code)
    return StopResult(how, end, stopped.seconds, exit_status(code), exit_signal(code))
