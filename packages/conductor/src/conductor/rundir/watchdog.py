"""The watchdog: the run's cleanup survives conductor's death (README: "How teardown
leaves nothing behind").

conductor starts it before any service: a small process in a session of its own, so no
Ctrl-C or group signal meant for the run reaches it. It holds the read end of a pipe
whose write end only conductor holds, and a share of the logs folder's lock. A normal
run writes "done" when its teardown is over, then ends the watchdog and waits for it,
so it never outlives the run. When the pipe breaks without "done", conductor has died
(SIGKILL, the OOM killer, a crash): the watchdog stops what the run recorded or marked
as `clean` does, and as teardown does (each service's stop signal, SIGKILL after its
stop_timeout), removes the folders conductor made, writes to conductor.log, and exits.
Its share of the lock keeps the next run and `clean` out of the folder meanwhile.

It carries no run marker, so no marker scan (teardown's sweep, `clean`, its own) ever
takes it for one of the run's processes; as conductor's own child it is also none of
the subreaper sweep's business.

Until it wakes it only waits on the pipe: its interpreter runs `BOOT` with nothing
imported, so it costs conductor's start one fork-and-exec (no wait), and the import of
conductor happens only once there is cleanup to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conductor.files import logs, safe_io
from conductor.process import portable, reaper
from conductor.process.start_stop import describe_exit

DONE = b"done\n"
_DISMISS_WAIT = 1.0  # after SIGKILL, how long to wait for the kernel to end it

# Run with `python -c`; its first line is what `ps` shows. argv: conductor's import
# root, then main()'s: the logs folder, the run id, conductor's pid, the lock's fd.
# stdin is the pipe: conductor writes each entry it adds to its run record there, a
# JSON line (RunDir.tell), and "done" once its teardown is over; the pipe breaking
# without "done" means conductor died, and main() gets what it was told.
# A run that lasts longer than PREPARE_AFTER has the cleanup code imported in advance
# (~100 ms of CPU, once), so the watchdog acts at once; a shorter one never pays for it.
# Not sooner: at 1 s the import fell while services were getting ready, on 2 cores.
PREPARE_AFTER = 3.0
BOOT = f"""\
# conductor's watchdog (conductor/rundir/watchdog.py): waits for "done" from conductor
import os, select, sys, time
sys.path.insert(0, sys.argv[1])
told, prepare_at = b"", time.monotonic() + {PREPARE_AFTER}
while not told.endswith(b"\\ndone\\n") and told != b"done\\n":
    if prepare_at is not None:
        left = prepare_at - time.monotonic()
        if left <= 0 or not select.select([0], [], [], left)[0]:
            import conductor.rundir.watchdog
            conductor.rundir.watchdog.prepare()
            prepare_at = None
            continue
    try:
        said = os.read(0, 65536)
    except OSError:
        said = b""
    if not said:
        from conductor.rundir.watchdog import main
        sys.exit(main(sys.argv[2:], told))
    told += said
"""


class Watchdog:
    """conductor's side: the child and the pipe's write end."""

    def __init__(self, popen: subprocess.Popen[bytes], pipe: int) -> None:
        self.pid = popen.pid
        self._popen = popen
        self._pipe: int | None = pipe

    def tell(self, line: bytes) -> None:
        """Pass on an entry of the run record (RunDir.tell): the watchdog stops what it
        is told of even if the record on disk is gone or the process hid its mark."""
        if self._pipe is not None:
            with contextlib.suppress(OSError):  # a watchdog that died: said in dismiss()
                os.write(self._pipe, line)

    def dismiss(self) -> None:
        """The run is over and nothing of it is left: say "done", end the watchdog and
        wait for it (with a deadline), so it never outlives the run."""
        popen = self._popen
        if popen.poll() is not None:
            logs.logger.warning(
                "watchdog: had exited during the run (%s); see above in this log",
                describe_exit(popen.returncode),
            )
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe, DONE)
            os.close(self._pipe)
            self._pipe = None
        if popen.poll() is not None:
            return
        # Our own child, not yet waited for: its pid cannot name anything else. It
        # would exit on "done" by itself, but may still be starting its interpreter.
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + _DISMISS_WAIT
        while popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)


def start(logs_dir: Path, run_id: str, lock_fd: int) -> Watchdog | None:
    """Start the watchdog for a run whose record is in `logs_dir`; None off POSIX."""
    if portable.WINDOWS:
        return None
    root = str(Path(__file__).resolve().parents[2])  # the folder holding conductor/
    try:
        # The run's own conductor.log, through files (never a link's target, never a
        # FIFO's open that blocks): the watchdog's crash, if any, ends up there.
        log = safe_io.append_to(logs_dir / "conductor.log")
    except OSError:
        return None
    read_end, write_end = os.pipe()  # neither is inherited by anything else we start
    try:
        popen = reaper.popen(
            [
                sys.executable,
                "-c",
                BOOT,
                root,
                str(logs_dir),
                run_id,
                str(os.getpid()),
                str(lock_fd),
            ],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=log,  # a crash of the watchdog itself ends up in the post-mortem
            pass_fds=(lock_fd,),
            cwd="/",
            start_new_session=True,
        )
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
        os.close(log)
    return Watchdog(popen, write_end)


def _event_log(logs_dir: Path) -> logging.Handler:
    """The run's conductor.log; when the folder is gone (moved or deleted while the run
    ran), stderr, which is that very file, opened when the watchdog started (start())."""
    if logs_dir.is_dir():
        with contextlib.suppress(OSError):
            return logs.setup_event_log(logs_dir, append=True)
    return logs.event_log_to(sys.stderr)


def is_watchdog(pid: int, logs_dir: Path, run_id: str) -> bool:
    """`pid` runs as this folder's watchdog for run `run_id` (start()'s arguments): what
    `clean` asks of a lock holder before it waits for one, so a lock held by anything
    else (with a forged record beside it) is never waited for. A hint, like the record:
    clean acts on nothing because of it."""
    args = portable.argv(pid)
    return args[1:3] == ["-c", BOOT] and args[4:6] == [str(logs_dir), run_id]


def prepare() -> None:
    """Import what main() needs, while there is time to spare."""
    import psutil  # noqa: F401  (into sys.modules, where conductor's lazy import finds it)

    from conductor.rundir import (
        run_record,  # noqa: F401
    )


def main(argv: list[str], told: bytes = b"") -> int:
    """In the watchdog, once conductor has died: stop what its run left (what conductor
    told it, and what the folder's record proves), and say so."""
    from conductor.rundir import lockfile, runfolders
    from conductor.rundir.run_record import LOCK_NAME, RunDir, told_record

    logs_dir, run_id, conductor_pid, lock_fd = Path(argv[0]), argv[1], argv[2], int(argv[3])
    # The lock is ours alone now: say who holds it, for the next run's "busy" message
    # (which tells a watchdog from a run by the record: its conductor is gone).
    # Its pid alone, from the file's start (the offset is conductor's, past its own
    # pid: writing there left NUL bytes before it), as lockfile.take writes one.
    with contextlib.suppress(OSError):
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, str(os.getpid()).encode(), 0)
    handler = _event_log(logs_dir)
    log = logs.logger
    try:
        log.warning(
            "watchdog: conductor (pid %s) died before its teardown ended; stopping what "
            "its run started",
            conductor_pid,
        )
        began = time.monotonic()
        try:
            vouched = told_record(run_id, told)
            left = asyncio.run(RunDir(logs_dir).stop_leftovers(run_id, vouched))
        except Exception as exc:  # the last resort ends in one line, never a traceback
            log.error("watchdog: could not finish the cleanup (%s); run `conductor clean`", exc)
            return 1
        stopped = left.stopped
        # The run is over: its subfolder's marker says when, and its lock file goes
        # (still held through the fd we share; see lockfile).
        runfolders.finish(logs_dir, run_id)
        lockfile.unlink(lock_fd, logs_dir / LOCK_NAME)
        if left.warning():
            log.warning("watchdog: %s", left.warning())
        log.warning(
            "watchdog: stopped %d process(es) in %.2fs%s",
            len(stopped),
            time.monotonic() - began,
            ": " + "; ".join(stopped) if stopped else "",
        )
        return 0
    finally:
        logs.close_event_log(handler)
