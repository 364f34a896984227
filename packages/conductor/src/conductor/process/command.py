"""COMMAND, the test run itself: live on the terminal, in a process group of its own
unless it shares the terminal with us (then Ctrl-C already reaches it directly)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from conductor.errors import ConductorError
from conductor.process import kill, ownership, portable, reaper, start_stop

SERVICE = ownership.COMMAND


# SIGTERM to SIGKILL for COMMAND in teardown: after --timeout, at the end of a run, and
# when the watchdog stops a dead conductor's run.
STOP_GRACE = 2.0


class CommandNotRunnable(ConductorError):
    """COMMAND could not be executed at all; statuses as a shell gives them."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _shares_terminal() -> bool:
    """True when we run in the terminal's foreground group, so the terminal's Ctrl-C
    signals COMMAND itself; forwarding would deliver it twice."""
    if portable.WINDOWS:
        return False
    try:
        return os.isatty(sys.stdin.fileno()) and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def check_argv(argv: Sequence[str]) -> None:
    """Refuse, before anything starts, a COMMAND that exec would refuse with a traceback."""
    if not argv:
        raise ConductorError("COMMAND is empty; give the program to run and its arguments")
    for position, arg in enumerate(argv, start=1):
        if "\0" in arg:
            raise ConductorError(
                f"COMMAND argument {position} contains a NUL byte, which no program "
                "argument can hold"
            )


class Command:
    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        mark: ownership.Mark,
        *,
        cwd: Path | None = None,
    ) -> None:
        check_argv(argv)
        self.argv = argv
        self.env = dict(env)  # environment.command's, the mark included
        self.mark = mark
        self.cwd = cwd
        self.shares_terminal = _shares_terminal()
        self.proc: asyncio.subprocess.Process | None = None
        self._started: float | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        group = {} if self.shares_terminal else portable.child_group_kwargs()
        try:
            self.proc = await reaper.create_subprocess_exec(
                *self.argv, env=self.env, cwd=self.cwd, **group
            )
        except FileNotFoundError:
            if self.cwd is not None and not self.cwd.is_dir():
                raise CommandNotRunnable(
                    f"[run] cwd {self.cwd} is not a folder; fix cwd in the configuration", 127
                ) from None
            raise CommandNotRunnable(
                f"command not found: {self.argv[0]!r}; check the words after --", 127
            ) from None
        except PermissionError:
            raise CommandNotRunnable(f"command not executable: {self.argv[0]!r}", 126) from None
        except OSError as exc:
            # Found but not runnable: ENOEXEC (neither a binary nor a script with a #!
            # line), ENOTDIR, E2BIG... A shell says 126 for all of them.
            hint = "; a script needs a #! line" if exc.errno == errno.ENOEXEC else ""
            raise CommandNotRunnable(
                f"command cannot be executed: {self.argv[0]!r} ({exc.strerror}){hint}", 126
            ) from None
        self._started = portable.start_time(self.proc.pid)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        status = start_stop.exit_status(code)
        assert status is not None
        return status

    def _targets(self) -> kill.Targets:
        """COMMAND (and its group, unless it shares ours with the terminal) and whatever
        carries COMMAND's mark."""
        assert self.proc is not None
        leader = kill.Leader(
            self.proc.pid, self._started, group=not self.shares_terminal, child=self.proc
        )
        return kill.Targets(self.mark, SERVICE, [leader])

    def send(self, sig: int) -> None:
        """Pass a signal on to COMMAND (its whole group when it has one of its own)."""
        if self.running:
            self._targets().leaders[0].send(sig)

    def kill_now(self) -> None:
        if self.proc is not None:
            kill.kill_now(self._targets())

    async def terminate(self, grace: float) -> None:
        """SIGTERM COMMAND's tree, SIGKILL what is left after `grace`; always waits."""
        if self.running:
            await kill.stop(self._targets(), signal.SIGTERM, grace)
