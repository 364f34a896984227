"""Service logs on disk, and reading them while they grow.

The service writes straight into its file, so the file is the truth; readers (the log
probe, --show-logs, the failure report) follow the file and never stand in the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from conductor.files import masking, safe_io
from conductor.files.printable import printable

EVENT_LOG = "conductor.log"  # conductor's own events, in every logs folder
REPORT_FILES = ("summary.json", "report.html")  # a run's end (report/summary.py)
FOLLOW_POLL = 0.005
_CHUNK = 1 << 16
# The most of one line a reader holds: the log probe matches a line's first LINE_WINDOW
# bytes, and --show-logs prints a longer line in pieces of this size. A service's line
# can be any length; a reader's memory and time per chunk must not be.
LINE_WINDOW = 1 << 16
TAIL_BYTES = 8192  # the failure tail: at most this much of the log's end...
TAIL_LINE_BYTES = 1024  # ...and this much of any one line

logger = logging.getLogger("conductor")
# Until a run opens conductor.log, events go nowhere: without this, Python's last-resort
# handler would print each warning a second time on stderr (Reporter already did).
logger.addHandler(logging.NullHandler())


def open_log(path: Path) -> int:
    """A fresh log file for one service; O_APPEND keeps stdout and stderr interleaved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return safe_io.create(path, append=True)


@dataclass(frozen=True)
class Tail:
    """The end of a log for the console; `cut` when bytes were left out to keep it short."""

    lines: list[str]
    cut: bool


def tail(
    path: Path,
    lines: int = 30,
    *,
    max_bytes: int = TAIL_BYTES,
    line_bytes: int = TAIL_LINE_BYTES,
) -> Tail:
    """The last `lines` lines of a log, read from its last `max_bytes` only (a crashing
    service's last line may be gigabytes), each cut to `line_bytes`: masked before any
    cut (the block's start never splits a secret, a line is masked whole and then cut),
    and shown with its control characters escaped (a service's ESC or OSC sequence
    must not act on the user's terminal)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            # One byte more than we keep shows whether the block starts a line, and
            # masking.reach() more let the start move back off a secret it would split.
            first = max(size - max_bytes, 0)
            begin = max(first - 1 - masking.reach(), 0)
            handle.seek(begin)
            block = handle.read(size - begin)
    except OSError:
        return Tail([], False)
    keep = masking.safe_cut(block, first - begin)
    fragment = keep > 0 and block[keep - 1 : keep] != b"\n"
    parts = block[keep:].split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    if fragment and parts and parts[0] == b"":  # we keep only the newline that ended it
        parts.pop(0)
        fragment = False
    if len(parts) > lines:
        parts, fragment = parts[-lines:], False
    cut = fragment
    text = []
    for part in parts:
        part = masking.mask_bytes(part)
        if fragment:  # its end is what we have: show the end
            shown = _from_char_start(part[-line_bytes:])
            text.append("… " + _shown(shown))
            fragment = False
            continue
        shown = _cut(part, line_bytes)
        line = _shown(shown)
        if len(shown) < len(part):
            line, cut = line + " …", True
        text.append(line)
    return Tail(text, cut)


def _shown(data: bytes) -> str:
    """A service's (masked) bytes as text to show: decoded, control characters escaped."""
    return printable(data.decode("utf-8", "replace"))


def _cut(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `data`, not ending inside a UTF-8 character (unless
    the data is not UTF-8 at all): each piece then decodes on its own."""
    if len(data) <= limit:
        return data
    end = limit
    while end > max(limit - 3, 1) and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end] if data[end] & 0xC0 != 0x80 else data[:limit]


def _piece(data: bytes, window: int) -> bytes:
    """The first piece of a line longer than `window`: about `window` bytes, cut
    between UTF-8 characters and never inside a secret, so that each piece, masked on
    its own, shows no part of one."""
    return data[: masking.safe_cut(data, len(_cut(data, window)))]


def _from_char_start(data: bytes) -> bytes:
    """`data` without the UTF-8 continuation bytes it may start with (at most three)."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return data[skip:]


Piece = tuple[bytes, bool]  # part of a line (without its newline); whether it starts the line


class LineSplitter:
    """Cuts a byte stream into lines, holding at most `window` (+ `masking.reach()`)
    bytes of an unfinished one.

    A line comes as one piece, or, when longer than `window`, as pieces of about
    `window` bytes (cut between UTF-8 characters and never inside a secret, see
    masking.safe_cut), only the first marked as starting
    the line: every byte comes out, and a line of any length costs no more memory, and
    no more time per chunk, than `window`. Newlines are looked for in new data only.
    """

    def __init__(self, window: int = LINE_WINDOW) -> None:
        self.window = window
        self._partial = b""  # the unfinished line's bytes not yet given out
        self._starts_line = True  # whether _partial is the start of its line

    def feed(self, data: bytes) -> list[Piece]:
        lines = data.split(b"\n")
        rest = lines.pop()
        out: list[Piece] = []
        if lines:
            self._complete(out, self._partial + lines[0])
            self._partial = b""
            if len(data) <= self.window:  # no other line can be longer: the fast path
                out += [(line, True) for line in lines[1:]]
            else:
                for line in lines[1:]:
                    self._complete(out, line)
        partial = self._partial + rest
        # A piece is cut only once the bytes after the cut are here: a secret that
        # would straddle it must be seen whole (masking.safe_cut).
        while len(partial) > self.window + masking.reach():
            piece = _piece(partial, self.window)
            out.append((piece, self._starts_line))
            partial, self._starts_line = partial[len(piece) :], False
        self._partial = partial
        return out

    def flush(self) -> list[Piece]:
        """The last line, when the stream ends without a newline."""
        out: list[Piece] = []
        if self._partial:
            self._complete(out, self._partial)
        self._partial, self._starts_line = b"", True
        return out

    def _complete(self, out: list[Piece], line: bytes) -> None:
        starts = self._starts_line
        while len(line) > self.window:
            piece = _piece(line, self.window)
            out.append((piece, starts))
            line, starts = line[len(piece) :], False
        out.append((line, starts))
        self._starts_line = True


async def follow(
    path: Path,
    stop: Callable[[], bool] | None = None,
    *,
    window: int = LINE_WINDOW,
    start: int = 0,
) -> AsyncGenerator[list[Piece], None]:
    """Yield the lines appended to `path` from byte `start` on (a line's start: a
    second attempt of a service reads only its own lines), as LineSplitter pieces, a
    batch per read.

    The loop gets a turn after every read, so a flood delays neither a deadline nor
    Ctrl-C. Ends when `stop()` turns true, after reading to the end, so nothing written
    before then is lost; a last unterminated line comes too.
    """
    while not path.exists():
        if stop is not None and stop():
            return
        await asyncio.sleep(FOLLOW_POLL)
    lines = LineSplitter(window)
    with path.open("rb") as handle:
        handle.seek(start)
        while True:
            finishing = stop is not None and stop()
            data = handle.read(_CHUNK)
            if data:
                batch = lines.feed(data)
                if batch:
                    yield batch
                await asyncio.sleep(0)
                continue
            if finishing:
                if last := lines.flush():
                    yield last
                return
            await asyncio.sleep(FOLLOW_POLL)


async def first_match(
    path: Path, patterns: Sequence[re.Pattern[bytes]], *, start: int = 0
) -> bytes:
    """The first line of `path` (as it grows, from byte `start`) that one of `patterns`
    finds. Each line is matched on its first LINE_WINDOW bytes: a line of any length
    then costs no more time or memory than that (README, "Every wait has its own
    deadline")."""
    async with contextlib.aclosing(follow(path, start=start)) as batches:
        async for batch in batches:
            for piece, starts_line in batch:
                if starts_line and any(regex.search(piece) for regex in patterns):
                    return piece
    raise AssertionError("follow() without stop never ends")  # pragma: no cover


@contextlib.contextmanager
def step(what: str) -> Iterator[list[str]]:
    """One line in conductor.log for one step of a teardown, once it is over: what it
    did, how long it took, and what the caller adds to the list it is given
    (`teardown: swept for escaped processes in 0.004s (none found)`). A slow teardown
    is then read off conductor.log, step by step."""
    began = time.monotonic()
    notes: list[str] = []
    try:
        yield notes
    finally:
        more = f" ({'; '.join(notes)})" if notes else ""
        logger.info("teardown: %s in %.3fs%s", what, time.monotonic() - began, more)


def setup_event_log(logs_dir: Path, *, append: bool = False) -> logging.Handler:
    """Send conductor's own events to <logs_dir>/conductor.log for the post-mortem (a
    fresh one per run; the watchdog appends to the run's own)."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / EVENT_LOG
    fd = safe_io.append_to(path) if append else safe_io.create(path, append=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.stream = open(fd, "a", encoding="utf-8")  # noqa: SIM115 (the handler closes it)
    return _event_handler(handler)


def event_log_to(stream: IO[str]) -> logging.Handler:
    """conductor's events to an open stream: the watchdog's stderr, which is the run's
    conductor.log opened at its start, once the folder itself is gone."""
    return _event_handler(logging.StreamHandler(stream))


def _event_handler(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%H:%M:%S")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return handler


def close_event_log(handler: logging.Handler) -> None:
    logger.removeHandler(handler)
    handler.close()


def forget_reports(logs_dir: Path) -> str | None:
    """Remove the folder's summary.json and report.html as a run starts (it has just
    taken the folder's lock). A run SIGKILLed before its end writes neither, so the
    previous run's, which may say `exit 0`, must not stay behind to speak for it. Only
    the names are unlinked: a link there goes, never its target. Returns why one could
    not be removed, else None."""
    for name in REPORT_FILES:
        try:
            os.unlink(logs_dir / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"could not remove the previous run's {logs_dir / name}: {exc.strerror or exc}"
    return None
