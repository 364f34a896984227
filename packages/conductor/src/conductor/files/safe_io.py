"""Writing conductor's own files into a folder that others may write to as well.

A logs folder is shared ground: a hostile or careless process may have put a symbolic
or hard link at a name conductor writes (`svc.log`, `conductor.log`, `summary.json`,
the run record or a temporary file beside them). Opened by name, with O_TRUNC, such a
link makes conductor overwrite its target, which can be any file the user (or root)
may write. So every file conductor writes is made anew: whatever is at its name is
unlinked first (a link goes, its target untouched), and the file is created with
O_EXCL | O_NOFOLLOW, so nothing slipped in between is opened either. This is the one
way conductor writes a file in a folder it does not own alone.

Reading one back (the run record) is as wary: a FIFO planted at its name would hang the
open for good (deaf to SIGTERM), and a link could lead anywhere (`/dev/zero`, read
without end), so only a plain file, not a link, and only so much of it, is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def create(path: Path, mode: int = 0o644, *, append: bool = False) -> int:
    """A new, empty file at `path` (whatever was there is unlinked), open for writing;
    its descriptor. OSError when it cannot be made (a folder at that name, say)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | (os.O_APPEND if append else 0)
    return os.open(path, flags, mode)


def _fresh_beside(path: Path, mode: int) -> tuple[int, Path]:
    """A file just made beside `path` at an unused random name, open for writing."""
    while True:  # os.urandom, not secrets: that imports hashlib before the first spawn
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode), tmp
        except FileExistsError:
            continue  # someone's file (or link) at that name: left, another name tried


def append_to(path: Path, mode: int = 0o644) -> int:
    """`path` opened to append (made if missing), only if it is a plain file of one
    link: the watchdog adds to the run's own conductor.log, never to a link's target.
    O_NONBLOCK: a FIFO planted there fails the open at once instead of blocking it."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags, mode)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{path} is not a plain file of its own; not writing to it")
    return fd


def replace(path: Path, text: str, mode: int = 0o644) -> None:
    """Put `text` at `path` at once: readers see the old file or the new one, never
    half of it; a link at `path` is replaced, not written through. The text is written
    first to a new name of its own (O_EXCL; `mode` as umask allows), never one that may
    be the user's: a fixed `NAME.tmp` was unlinked and taken, in a folder shared with
    the user's files."""
    fd, tmp = _fresh_beside(path, mode)
    try:
        with open(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NotPlain(ValueError):
    """What `read_text` refuses to read; `str()` says what it is."""


def read_text(path: Path, limit: int) -> str:
    """The text of the plain file at `path`, at most `limit` bytes of UTF-8. NotPlain
    for a link, anything but a plain file, or a larger file; OSError (FileNotFoundError
    when missing) and UnicodeDecodeError as reading raises them. Never waits."""
    return read_plain(path, limit)[0]


def read_plain(path: Path, limit: int) -> tuple[str, os.stat_result]:
    """`read_text`, with the status of the very file that was read (its owner, its
    age), taken from the open file, not looked up again by name."""
    fd, info = _open_plain(path)
    with open(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotPlain(f"it is larger than {limit} bytes")
    return data.decode("utf-8"), info


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of the plain file at `path` (of any length); NotPlain
    and OSError as for read_text."""
    fd, _ = _open_plain(path)
    with open(fd, "rb") as handle:
        return handle.read(size)


def _open_plain(path: Path) -> tuple[int, os.stat_result]:
    """`path` open for reading, only when it is a plain file and not a link; never
    waits (a FIFO there is refused, not opened to block)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotPlain("it is a link, which conductor does not follow") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)  # before open(): Python refuses to wrap a folder's descriptor
        raise NotPlain(f"it is {kind(info.st_mode)}, not a plain file")
    return fd, info


def kind(mode: int) -> str:
    """What a file of `mode` (st_mode) is, in words: "a folder", "a FIFO", ..."""
    kinds = [
        (stat.S_ISREG, "a plain file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a link"),
    ]
    return next((words for test, words in kinds if test(mode)), "not a file")


def why_unusable(folder: Path, exc: OSError) -> str:
    """Why `folder` cannot be made or written, as `exc` (from making or writing it)
    says: a file where the folder, or one of its parents, should be; or the error."""
    blocker = next(
        (p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
        None,
    )
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
