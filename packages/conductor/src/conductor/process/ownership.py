"""What conductor may touch, and how it proves it (README: "What conductor will and won't
touch").

Every process conductor starts carries the run's mark in its environment: the run's
random id and its logs folder. The logs folder is part of the mark because `clean`
holds that folder's lock before it acts, so a record naming another, live run's id can
never reach that run's processes. A record on disk only says where to look: a process
is the run's only when its start time is the recorded one *and* it carries the mark; a
folder only when conductor made it, in the temporary directory, under its own prefix,
with a marker file (its own) naming the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conductor.files import safe_io
from conductor.process import portable, procfs

if TYPE_CHECKING:
    import psutil
else:
    from conductor.process.lazy_psutil import psutil

MARKER_RUN = "CONDUCTOR_RUN_ID"
MARKER_LOGS = "CONDUCTOR_LOGS_DIR"
MARKER_SERVICE = "CONDUCTOR_SERVICE"
COMMAND = "(command)"  # COMMAND's name as a service in the mark
FOLDER_PREFIX = "conductor-"
FOLDER_MARK = ".conductor-made"
_MARK_BYTES = 4096  # a marker is a line of JSON; more is not conductor's
_RUN_ID = re.compile(r"[0-9a-f]{32}")
# Start times come from clock ticks (1/100 s) since boot; a recycled pid starts later.
START_SLACK = 0.05


class NotOurs(Exception):
    """A record names something conductor cannot prove it made; `str()` says why."""


@dataclass(frozen=True)
class Mark:
    """The run's mark: what every process it starts carries in its environment."""

    run_id: str
    logs_dir: str

    def env(self, service: str) -> dict[str, str]:
        return {MARKER_RUN: self.run_id, MARKER_LOGS: self.logs_dir, MARKER_SERVICE: service}

    def entries(self, service: str | None = None) -> list[str]:
        """`NAME=value` entries a marked process's environment holds."""
        entries = [f"{MARKER_RUN}={self.run_id}", f"{MARKER_LOGS}={self.logs_dir}"]
        if service is not None:
            entries.append(f"{MARKER_SERVICE}={service}")
        return entries

    def carried_by(self, environ: Mapping[str, str], service: str | None = None) -> bool:
        return (
            environ.get(MARKER_RUN) == self.run_id
            and environ.get(MARKER_LOGS) == self.logs_dir
            and (service is None or environ.get(MARKER_SERVICE) == service)
        )


def marked(
    mark: Mark, service: str | None = None, exclude: Collection[int] = ()
) -> list[psutil.Process]:
    """Live processes carrying the mark (of `service`, if given), as handles that check
    the start time before every signal, so a pid recycled meanwhile is never hit."""
    return [proc for proc, _ in _marked(mark, service, exclude)]


def marked_by_service(mark: Mark, exclude: Collection[int] = ()) -> dict[str, list[psutil.Process]]:
    """What carries the run's mark, by the service its mark names (COMMAND's under
    COMMAND): one scan of /proc for a whole teardown, where a scan per service made
    500 services' stops wait on each other past their stop_timeouts."""
    found: dict[str, list[psutil.Process]] = {}
    for proc, environ in _marked(mark, None, exclude):
        found.setdefault(environ.get(MARKER_SERVICE, ""), []).append(proc)
    return found


def _marked(
    mark: Mark, service: str | None, exclude: Collection[int]
) -> list[tuple[psutil.Process, dict[str, str]]]:
    me = os.getpid()
    found = []
    for pid in portable.pids_with_environ(mark.entries(service)):
        if pid == me or pid in exclude:
            continue
        try:
            proc = psutil.Process(pid)
            # Read again through the handle we will signal: the pid may have been
            # recycled since the scan.
            environ = proc.environ()
            if not mark.carried_by(environ, service):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.append((proc, environ))
    return found


def process(pid: int, started: float, mark: Mark, log: Path | None = None) -> psutil.Process | None:
    """The recorded process `pid` as a handle, when it is the run's; None when it is
    gone. Raises NotOurs when the pid now names something else.

    A service leader may write over its environment, mark included (redis-server's
    process title does): `log`, its NAME.log in the folder `clean` holds, then proves
    it instead (writes_to_its_log)."""
    now = portable.start_time(pid)
    if now is None:
        return None
    if abs(now - started) > START_SLACK:
        raise NotOurs(f"pid {pid} started at another time than recorded (a recycled pid)")
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > START_SLACK:
            raise NotOurs(f"pid {pid} started at another time than recorded (a recycled pid)")
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        environ = proc.environ()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        raise NotOurs(f"pid {pid}: its environment cannot be read") from None
    if not mark.carried_by(environ) and not (log is not None and writes_to_its_log(pid, log)):
        raise NotOurs(f"pid {pid} does not carry this run's mark")
    return proc


def writes_to_its_log(pid: int, log: Path) -> bool:
    """`pid` (whose start time is the recorded one) is still the leader of the session
    conductor made for it, and its stdout or stderr is still that service's NAME.log:
    the very file, a plain one with no other link (so no link planted in a folder can
    stand for another process's output), which conductor created anew for the run
    (safe_io.create). A forged record can name any pid and start time, but not make a
    stranger's output this file."""
    try:
        if os.getsid(pid) != pid:
            return False
        ours = os.stat(log, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(ours.st_mode) or ours.st_nlink != 1:
        return False
    for fd in (1, 2):
        theirs = procfs.fd_stat(pid, fd)
        if theirs is not None and (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            return True
    return False


def plan_folder(kind: str) -> Path:
    """A fresh name for a conductor-made folder in the temporary directory, chosen
    before it is made (a plan fills templates such as {services.NAME.socket_dir} with
    it); `make_folder` creates it."""
    import secrets
    import tempfile  # here, not at the top: every conductor start would pay for it

    temp = Path(tempfile.gettempdir()).resolve()
    return temp / f"{FOLDER_PREFIX}{kind}-{secrets.token_hex(6)}"


def make_folder(mark: Mark, folder: Path) -> Path:
    """Create `folder` (from plan_folder; never an existing one, which would not be
    ours) with the marker file that lets a later `clean` prove conductor made it for
    this run. OSError when it cannot be made."""
    os.mkdir(folder, 0o700)
    with os.fdopen(safe_io.create(folder / FOLDER_MARK), "w", encoding="utf-8") as out:
        out.write(json.dumps({"run_id": mark.run_id, "logs_dir": mark.logs_dir}))
    return folder


def check_folder(path: object, mark: Mark) -> Path | None:
    """`path` when it is a folder conductor made for this run; None when it is gone.
    Raises NotOurs otherwise."""
    import tempfile

    if not isinstance(path, str) or not path or "\0" in path:
        raise NotOurs(f"folder {path!r} is not a path")
    folder = Path(path)
    temp = Path(tempfile.gettempdir()).resolve()
    if (
        not folder.is_absolute()
        or folder.parent != temp
        or not folder.name.startswith(FOLDER_PREFIX)
    ):
        raise NotOurs(f"folder {path!r} is not conductor's: not {temp}/{FOLDER_PREFIX}*")
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotOurs(f"folder {path!r} cannot be examined ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise NotOurs(f"folder {path!r} is not a folder")
    # The marker is conductor's own file, even in a folder it gave to a server's user
    # (PostgreSQL's socket goes there): that user could replace the file, but the new
    # one would be theirs.
    written = folder_mark(folder)
    if written is None:
        raise NotOurs(f"folder {path!r} has no marker conductor wrote")
    if (written.run_id, written.logs_dir, written.ended) != (mark.run_id, mark.logs_dir, None):
        raise NotOurs(f"folder {path!r} was made by another run")
    return folder


def remove_folder(path: object, mark: Mark) -> bool:
    """Delete a folder conductor made for this run; True when it was there. Raises
    NotOurs (and deletes nothing) for any other folder, or one holding a mount point."""
    folder = check_folder(path, mark)
    if folder is None:
        return False
    delete_tree(folder)
    return True


def delete_tree(folder: Path) -> bool:
    """Delete a folder that one of the checks here proved conductor's, never following a
    link inside it (shutil.rmtree's fd-based walk; a link itself is refused); errors
    while deleting are ignored. True when it is gone. The one way conductor deletes a folder of its
    own: temporary folders, and run-PID subfolders when they are pruned.

    A folder with a mount point at or below it raises NotOurs and is left whole: what
    is mounted there (a bind mount of someone's safe_io) is another filesystem's, and
    the walk would delete through it; a mount on the same filesystem shares its device
    number, so only the system's mount table tells."""
    _refuse_mount_points(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return not os.path.lexists(folder)


def _refuse_mount_points(folder: Path) -> None:
    """NotOurs when a mount point is at or below `folder` (the mount table, as psutil
    reads it on every platform), or when the table cannot be read to rule one out."""
    top = os.path.realpath(folder)
    try:
        mounts = [part.mountpoint for part in psutil.disk_partitions(all=True)]
    except (OSError, psutil.Error) as exc:
        raise NotOurs(
            f"{folder}: the mount table cannot be read to rule out a mount in it ({exc})"
        ) from None
    mount = next((m for m in mounts if m == top or m.startswith(top + os.sep)), None)
    if mount is not None:
        raise NotOurs(f"{folder}: it holds the mount point {mount}; conductor deletes none")


@dataclass(frozen=True)
class FolderMark:
    """What conductor wrote in a folder it made: the run that made it (the one that
    made it last, for a run-PID subfolder), that run's logs folder, and when the run
    ended (a run-PID subfolder's only; None while it runs, or when it died with its
    watchdog)."""

    run_id: str
    logs_dir: str
    ended: float | None
    written: float  # the marker's modification time


def mark_run_folder(folder: Path, run_id: str, *, ended: float | None = None) -> None:
    """Write (or rewrite, atomically) the marker of a run-PID subfolder conductor made,
    while holding its lock. OSError when it cannot be written."""
    mark: dict[str, object] = {"run_id": run_id, "logs_dir": str(folder)}
    if ended is not None:
        mark["ended"] = ended
    safe_io.replace(folder / FOLDER_MARK, json.dumps(mark))


def folder_mark(folder: Path) -> FolderMark | None:
    """The one reader of a folder's marker: what it says when it is conductor's own, a
    plain file (not a link, never a FIFO's endless wait, no more than a marker's size)
    of this user's, naming a run and a logs folder; None for anything else."""
    try:
        text, info = safe_io.read_plain(folder / FOLDER_MARK, _MARK_BYTES)
        if not portable.WINDOWS and info.st_uid != os.geteuid():
            return None
        written = json.loads(text)
    except (OSError, ValueError):  # NotPlain and UnicodeDecodeError are ValueErrors
        return None
    if not isinstance(written, dict):
        return None
    run_id, logs_dir, ended = written.get("run_id"), written.get("logs_dir"), written.get("ended")
    if (
        not isinstance(run_id, str)
        or not _RUN_ID.fullmatch(run_id)
        or not isinstance(logs_dir, str)
    ):
        return None
    if isinstance(ended, bool) or not isinstance(ended, int | float) or ended != ended:
        ended = None
    return FolderMark(run_id, logs_dir, None if ended is None else float(ended), info.st_mtime)


def run_folder_mark(folder: Path) -> FolderMark | None:
    """The marker of `folder` when conductor made it as a run-PID subfolder: a real
    folder (not a link) whose marker (folder_mark) names this very folder. None for
    anything else (a folder a user made, a link, a file, a copy moved from elsewhere, a
    marker that cannot be read)."""
    try:
        if not stat.S_ISDIR(folder.lstat().st_mode):
            return None
    except OSError:
        return None
    mark = folder_mark(folder)
    return mark if mark is not None and mark.logs_dir == str(folder) else None
