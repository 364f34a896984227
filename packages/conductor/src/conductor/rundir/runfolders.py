"""The folders conductor makes inside a logs folder, and how they are kept from piling
up: run-PID subfolders, where a run logs when its logs folder is busy (`--if-busy
subfolder`), and runs/NAME, where --keep-logs keeps a finished run's files.

A run that creates such a folder writes conductor's marker in it (process/ownership.py),
and stamps the marker with the time it ended when it lets go of the folder (the watchdog
does so for a run-PID subfolder of a run that was killed). The finished ones beyond the
newest few are deleted by one pruner: only those conductor provably made, each only
while the pruning run holds its lock, so a live one is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conductor.files import logs, safe_io
from conductor.process import ownership
from conductor.rundir import lockfile
from conductor.rundir.run_record import LOCK_NAME

PREFIX = "run-"
KEEP = 5  # finished run-PID subfolders kept in a logs folder
RUNS = "runs"  # --keep-logs: the kept runs' folder in the logs folder
# Pruning runs/ is one run at a time (a lock file in it): two runs ending at once would
# otherwise each skip a folder the other was looking at, and keep one too many.
_PRUNE_LOCK = ".conductor-prune.lock"
_PRUNE_WAIT = 2.0  # the most a run waits for another's pruning of runs/ (it takes ms)
_PRUNE_POLL = 0.01


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

    what: str = "run-PID subfolder(s)"
    removed: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        if not self.problems:
            return None
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"pruning old {self.what}: {self.problems[0]}{more}; left them"


def prune(logs_dir: Path, keep: int = KEEP) -> Pruned:
    """Delete the finished run-PID subfolders of `logs_dir` beyond the newest `keep`,
    newest by the time their run ended. Never raises for what it finds there."""
    return _prune(logs_dir, PREFIX, keep, Pruned())


def _prune(folder: Path, prefix: str, keep: int, out: Pruned) -> Pruned:
    """The one pruner: the folders of `folder` named `prefix`* that conductor made,
    finished ones beyond the newest `keep` deleted."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n[:1] != "."]
    except OSError:
        return out  # no logs folder, or not readable: nothing of ours to prune
    ours: list[tuple[float, Path]] = []
    for name in names:
        mark = ownership.run_folder_mark(folder / name)
        if mark is not None:
            ours.append((mark.ended if mark.ended is not None else mark.written, folder / name))
    ours.sort(key=lambda item: item[0], reverse=True)
    finished = 0
    for _, found in ours:
        if finished < keep:
            # Only to learn whether it is finished: a live one does not count.
            finished += _finished(found, out)
            continue
        _remove(found, out)
    if out.removed:
        logs.logger.info(
            "pruned %d finished %s: %s",
            len(out.removed),
            out.what,
            ", ".join(p.name for p in out.removed),
        )
    return out


def _finished(folder: Path, out: Pruned) -> int:
    path = folder / LOCK_NAME
    try:
        handle = lockfile.take(path)
    except lockfile.Busy:
        return 0
    except FileNotFoundError:
        return 0  # gone meanwhile (another run pruned it)
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


# --keep-logs: a finished run's files, kept in runs/NAME ---------------------------------


def runs_problem(logs_dir: Path) -> str | None:
    """Why runs/ of `logs_dir` cannot hold kept runs, or None (a folder, or none yet):
    a link is never followed, and a file is not conductor's to replace."""
    path = logs_dir / RUNS
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path} cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return (
            f"{path} is a symbolic link, which conductor never follows; "
            "remove it, or make it a folder"
        )
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is a file, not a folder; move it away"
    return None


def kept_name(started: float, run_id: str) -> str:
    """A kept run's folder name: when it started (UTC, to the millisecond) and its run
    id's start, so that the names sort as the runs started: 20261204T101502.123Z-1a2b3c4d."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
    return f"{stamp}.{int(started * 1000) % 1000:03d}Z-{run_id[:8]}"


@dataclass
class Keeping:
    """A run's folder in runs/, made as its teardown ends and held (its lock, so no
    pruner touches it) until the run's files are in it."""

    folder: Path
    run_id: str
    lock: IO[str]


def begin_keep(logs_dir: Path, run_id: str, started: float) -> Keeping | str:
    """runs/NAME made, locked and marked as this run's; or why it could not be."""
    problem = runs_problem(logs_dir)
    if problem is not None:
        return problem
    folder = logs_dir / RUNS / kept_name(started, run_id)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder.parent)
        problem = runs_problem(logs_dir)  # a link put there meanwhile is still no folder
        if problem is not None:
            return problem
        os.mkdir(folder)
        lock = lockfile.take(folder / LOCK_NAME)
    except (OSError, lockfile.Busy) as exc:
        return f"{folder} could not be made: {getattr(exc, 'strerror', None) or exc}"
    keeping = Keeping(folder, run_id, lock)
    try:
        ownership.mark_run_folder(folder, run_id)
    except OSError as exc:
        _let_go(keeping)
        return f"{folder} could not be marked as conductor's: {exc.strerror or exc}"
    return keeping


def finish_keep(keeping: Keeping, files: list[Path]) -> list[str]:
    """Put each of `files` in the kept folder, stamp its marker with the run's end and
    let go of it; what could not be kept. Each file is a hard link (instant, whatever
    its size): conductor replaces its files by new ones at every run, never writes into
    an old one, so a kept file stays as it was. A copy where no link can be made."""
    problems = []
    for path in files:
        try:
            _link_or_copy(path, keeping.folder / path.name)
        except FileNotFoundError:
            continue  # never written: a service that never started, a summary never made
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    with contextlib.suppress(OSError):
        ownership.mark_run_folder(keeping.folder, keeping.run_id, ended=time.time())
    _let_go(keeping)
    return problems


# A link across file systems, or where they cannot be made: copied instead.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def _link_or_copy(source: Path, target: Path) -> None:
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a plain file (a link, say); not kept")
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as src, open(safe_io.create(target), "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _let_go(keeping: Keeping) -> None:
    lockfile.unlink(keeping.lock.fileno(), keeping.folder / LOCK_NAME)
    keeping.lock.close()


def prune_kept(logs_dir: Path, keep: int) -> Pruned:
    """Delete the finished kept runs in runs/ of `logs_dir` beyond the newest `keep`
    (all of conductor's with 0), one pruning run at a time; whatever else is there (a
    folder of the user's) is left alone. Never raises for what it finds there."""
    out = Pruned(what=f"kept run(s) in {RUNS}/")
    runs = logs_dir / RUNS
    if runs_problem(logs_dir) is not None or not runs.is_dir():
        return out
    deadline = time.monotonic() + _PRUNE_WAIT
    while True:
        try:
            handle = lockfile.take(runs / _PRUNE_LOCK)
            break
        except lockfile.Busy as busy:
            if time.monotonic() >= deadline:
                out.problems.append(
                    f"another run (pid {busy.holder}) is pruning {runs}; waited {_PRUNE_WAIT:g}s"
                )
                return out
            time.sleep(_PRUNE_POLL)
        except OSError as exc:
            out.problems.append(f"{runs / _PRUNE_LOCK}: {exc.strerror or exc}")
            return out
    try:
        return _prune(runs, "", keep, out)
    finally:
        lockfile.unlink(handle.fileno(), runs / _PRUNE_LOCK)
        handle.close()
