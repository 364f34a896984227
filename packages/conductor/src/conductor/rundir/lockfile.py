"""The logs folder's lock file: taken without waiting, and gone once its run has ended.

The lock is flock(2) on `.conductor.lock`; the OS drops it when its holder dies, even by
SIGKILL. So that no stale file is left in every logs folder, the holder unlinks the file
when its run ends, *while it still holds the lock*. Unlinking a lock file opens the
classic race: run B opens the file, run A unlinks it and lets go, B's flock then
succeeds on a file that is no longer in the folder, and run C creates a new one and
locks that: two runs in one folder. So a taker, once it holds the lock, checks that the
file it locked is still the one the path names (same device and inode) and starts over
when it is not. With both rules, whoever holds the lock on the path's file is the one
owner of the folder.

conductor never follows a link here and never truncates or unlinks what it did not
make: the file is opened with O_NOFOLLOW and must be a plain file with a single link;
anything else is an OSError saying what it is, and is left as it is.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import IO

from conductor.process import portable

# How often a taker starts over because the file changed under it: each time means
# another run ended or began in that very instant, so a few suffice.
_TRIES = 20
# What conductor writes in the file: its pid in decimal, nothing else. Anything else
# (NUL bytes, padding, a sign, non-ASCII digits) names no pid, and is never echoed.
_PID = re.compile(rb"[1-9][0-9]{0,9}")
_HOLDER_BYTES = 16  # more than any pid: the rest is not read
_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted there must not hang the open
)


class Busy(Exception):
    """Another live process holds the lock; `holder` is the pid it wrote there, None
    when what is there is no pid as conductor writes one."""

    def __init__(self, holder: int | None) -> None:
        self.holder = holder
        super().__init__(holder)


def parse_pid(data: bytes) -> int | None:
    """The pid a lock file holds, parsed strictly: exactly ASCII decimal digits, as
    take() writes them; None for anything else. A file is a hint, never an authority."""
    return int(data) if _PID.fullmatch(data) else None


def _read_pid(fd: int) -> int | None:
    """The pid at the start of the open lock file, read as bytes (never decoded)."""
    os.lseek(fd, 0, os.SEEK_SET)
    return parse_pid(os.read(fd, _HOLDER_BYTES))


def describe(holder: int | None) -> str:
    """The holder for a message: `pid 29170`, never the file's bytes."""
    return "pid unknown: its lock file names none" if holder is None else f"pid {holder}"


def take(path: Path) -> IO[str]:
    """The lock on `path` (created when missing), with our pid written in it; raises
    Busy when another process holds it, OSError when it cannot be used (a link, not a
    plain file, no permission)."""
    for _ in range(_TRIES):
        try:
            fd = os.open(path, _FLAGS, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(
                    errno.ELOOP,
                    "its lock file is a symbolic link, which conductor never follows; remove it",
                    str(path),
                ) from None
            raise
        try:
            _check_plain(fd, path)
        except BaseException:
            os.close(fd)
            raise
        handle = os.fdopen(fd, "r+", encoding="ascii")
        try:
            if not portable.try_lock(handle):
                raise Busy(_read_pid(fd))
            if not _is_at(fd, path):
                # The file we locked was unlinked (its run ended) or replaced meanwhile:
                # the lock that counts is on whatever the path names now.
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            return handle
        except BaseException:
            handle.close()
            raise
    raise Busy(None)


def holder(path: Path) -> int | None:
    """What the live holder of the lock on `path` wrote there (its pid), or None when no
    live process holds it (no file, a link, not a plain file, or a lock free for the
    taking). For `--attach`, which must prove a live run owns the folder without
    creating or writing anything in it: the file is opened read-only, and a lock that
    turns out free is only held for that instant."""
    try:
        fd = os.open(path, os.O_RDONLY | (_FLAGS & ~(os.O_RDWR | os.O_CREAT)))
    except OSError:
        return None
    with os.fdopen(fd, "r", encoding="ascii") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or portable.try_lock(handle):
            return None  # closing the file lets go of a lock taken just now
        return _read_pid(fd)


def unlink(fd: int, path: Path) -> None:
    """Remove the lock file, by its holder, at the end of its run: only while `fd` still
    holds the lock and only when `path` is still that very file. Errors are ignored: a
    file left behind is only untidy (the next run takes it as usual)."""
    if portable.WINDOWS:  # an open file cannot be unlinked there; it stays
        return
    try:
        if _is_at(fd, path):
            os.unlink(path)
    except OSError:
        pass


def _is_at(fd: int, path: Path) -> bool:
    """Whether `path` (not followed) is the open file `fd`."""
    try:
        at = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (at.st_dev, at.st_ino) == (mine.st_dev, mine.st_ino)


def _check_plain(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(
            errno.EINVAL, "its lock file is not a plain file; conductor leaves it alone", str(path)
        )
    if info.st_nlink > 1:  # 0 is a file just unlinked: take() then starts over
        raise OSError(
            errno.EMLINK,
            "its lock file has other hard links, so writing it would change another file; "
            "conductor leaves it alone",
            str(path),
        )
