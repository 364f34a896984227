"""Service logs on disk, and reading them while they grow.

The service writes straight into its file, so the file is the truth; readers (the log
probe, --show-logs, the failure report) follow the file and never stand in the way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

FOLLOW_POLL = 0.005
_CHUNK = 1 << 16

logger = logging.getLogger("conductor")


def open_log(path: Path) -> int:
    """A fresh log file for one service; O_APPEND keeps stdout and stderr interleaved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last `lines` lines of a log, decoded leniently for the console."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, max(8192, lines * 512))
            while True:
                handle.seek(size - block)
                data = handle.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 4)
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:]


async def follow(path: Path, stop: Callable[[], bool] | None = None) -> AsyncIterator[bytes]:
    """Yield complete lines (without newline) as they are appended to `path`.

    Ends when `stop()` turns true, after a final read, so no line written before then
    is lost; a last unterminated line is yielded too.
    """
    pending = b""
    while not path.exists():
        if stop is not None and stop():
            return
        await asyncio.sleep(FOLLOW_POLL)
    with path.open("rb") as handle:
        while True:
            finishing = stop is not None and stop()
            data = handle.read(_CHUNK)
            if data:
                pending += data
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line
                continue
            if finishing:
                if pending:
                    yield pending
                return
            await asyncio.sleep(FOLLOW_POLL)


def setup_event_log(logs_dir: Path) -> logging.Handler:
    """Send conductor's own events to <logs_dir>/conductor.log for the post-mortem."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs_dir / "conductor.log", mode="w", encoding="utf-8")
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
