"""run-PID subfolders: where a run logs when its logs folder is busy (`--if-busy
subfolder`), and how they are kept from piling up.

A run that creates its subfolder writes conductor's marker in it (process/ownership.py), and stamps
the marker with the time it ended when it lets go of the folder (the watchdog does so
for a run that was killed). At the start of every run, the logs folder's finished
subfolders beyond the newest KEEP are deleted: only those conductor provably made, each
only while this run holds its lock, so a live one is never touched.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from conductor.files import logs
from conductor.process import ownership
from conductor.rundir import lockfile
from conductor.rundir.run_record import LOCK_NAME

PREFIX = "run-"
KEEP = 5  # finished run-PID subfolders kept in a logs folder


def subfolder(logs_dir: Path) -> tuple[Path, bool]:
    """This process's subfolder of a busy `logs_dir`, and whether this call created it
    (only then, or when conductor made it before, is it marked as conductor's: a
    `run-PID` folder a user made stays theirs). OSError when it cannot be made."""
    folder = logs_dir / f"{PREFIX}{os.getpid()}"
    try:
        os.mkdir(folder)
    except FileExistsError:
        return folder, False
    return folder, True


def claim(folder: Path, run_id: str, *, made: bool) -> None:
    """Mark `folder` as this run's (its lock held): when this run created it, or an
    earlier run of conductor did. A marker that cannot be written only means the folder
    is never pruned."""
    if made or ownership.run_folder_mark(folder) is not None:
        with contextlib.suppress(OSError):
            ownership.mark_run_folder(folder, run_id)


def finish(folder: Path, run_id: str) -> None:
    """Stamp the end of this run in its subfolder's marker, with the lock still held; a
    folder whose marker is not this run's (the logs folder itself, a user's folder) is
    left as it is."""
    mark = ownership.run_folder_mark(folder)
    if mark is not None and mark.run_id == run_id:
        with contextlib.suppress(OSError):
            ownership.mark_run_folder(folder, run_id, ended=time.time())


@dataclass
class Pruned:
    """What pruning did: folders removed, and at most one line about what went wrong."""

    removed: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        if not self.problems:
            return None
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"pruning old run-PID subfolders: {self.problems[0]}{more}; left them"


def prune(logs_dir: Path, keep: int = KEEP) -> Pruned:
    """Delete the finished run-PID subfolders of `logs_dir` beyond the newest `keep`,
    newest by the time their run ended. Never raises for what it finds there."""
    out = Pruned()
    try:
        names = [n for n in os.listdir(logs_dir) if n.startswith(PREFIX)]
    except OSError:
        return out  # no logs folder, or not readable: nothing of ours to prune
    ours: list[tuple[float, Path]] = []
    for name in names:
        folder = logs_dir / name
        mark = ownership.run_folder_mark(folder)
        if mark is not None:
            ours.append((mark.ended if mark.ended is not None else mark.written, folder))
    ours.sort(key=lambda item: item[0], reverse=True)
    finished = 0
    for _, folder in ours:
        if finished < keep:
            # Only to learn whether it is finished: a live one does not count.
            finished += _finished(folder, out)
            continue
        _remove(folder, out)
    if out.removed:
        logs.logger.info(
            "pruned %d finished run-PID subfolder(s): %s",
            len(out.removed),
            ", ".join(p.name for p in out.removed),
        )
    return out


def _finished(folder: Path, out: Pruned) -> int:
    path = folder / LOCK_NAME
    try:
        handle = lockfile.take(path)
    except lockfile.Busy:
        return 0
    except OSError as exc:
        out.problems.append(f"{folder}: {exc.strerror or exc}")
        return 0
    lockfile.unlink(handle.fileno(), path)
    handle.close()
    return 1


def _remove(folder: Path, out: Pruned) -> None:
    """Delete `folder` while holding its lock, after proving again (under the lock)
    that conductor made it."""
    path = folder / LOCK_NAME
    try:
        handle = lockfile.take(path)
    except lockfile.Busy:
        return  # live: never touched
    except FileNotFoundError:
        return  # gone meanwhile (another run pruned it)
    except OSError as exc:
        out.problems.append(f"{folder}: {exc.strerror or exc}")
        return
    try:
        if ownership.run_folder_mark(folder) is None:
            return
        if ownership.delete_tree(folder):
            out.removed.append(folder)
        else:
            out.problems.append(f"{folder} could not be deleted whole")
    except ownership.NotOurs as exc:
        out.problems.append(str(exc))
    finally:
        lockfile.unlink(handle.fileno(), path)
        handle.close()
