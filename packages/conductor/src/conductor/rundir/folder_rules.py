"""Which folder may be a logs folder, and when the files at conductor's names in it are
conductor's to replace.

A logs folder is named by the user, often through a variable: `--logs-dir "$LOGS/"`
with LOGS unset is `/`, and `--logs-dir "$LOGS"` is empty (the working folder). So the
root folder, the user's home and an empty name are refused outright. Any other folder
may be shared with the user's own files (`logs_dir = "."` at a project root): there
conductor writes only names it owns. A folder is conductor's when it carries MARK_NAME,
which a run leaves in every folder it takes, or an earlier conductor's conductor.log
(written before the mark existed). In a folder that is not, a file at one of the names
a run writes (conductor.log, summary.json, report.html, NAME.log) is the user's: the
run stops before writing anything, rather than delete it and write its own there.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from conductor.files import logs, safe_io

MARK_NAME = ".conductor-logs"
_MARK_TEXT = (
    "conductor writes its logs here: conductor.log, summary.json, report.html and NAME.log "
    "in this folder are its own to replace.\n"
)
# The first line of conductor.log, as conductor's event log writes it (files/logs.py).
_EVENT_LINE = re.compile(rb"\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


class Unfit(ValueError):
    """A folder that can be no logs folder, or not this run's; `str()` says why."""


def check(folder: Path) -> None:
    """Raise Unfit when `folder` can be no logs folder (see unfit)."""
    if problem := unfit(folder):
        raise Unfit(problem)


def unfit(written: str | Path, base: Path | None = None) -> str | None:
    """Why `written` (relative to `base`, else the working folder) can be no logs
    folder, as the end of a sentence about it; None when it can be one (whether it can
    be written is found when it is)."""
    if str(written) == "":
        return "is empty (an unset variable?); name the folder for conductor's logs"
    try:
        folder = (base / written if base is not None else Path(written)).resolve()
        homes = _homes()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: no home to be found
        return None  # what is wrong with it is said where it is used
    advice = "(an unset variable in the path?); give conductor a folder of its own"
    if folder == folder.parent:
        return f"{folder} is the root folder, not a logs folder {advice}"
    if folder in homes:
        return f"{folder} is your home folder, not a logs folder {advice}"
    return None


def _homes() -> set[Path]:
    """The user's home: $HOME, and the account's own (HOME may have been changed)."""
    found = {Path.home().resolve()}
    with contextlib.suppress(ImportError, KeyError, OSError):
        import pwd

        found.add(Path(pwd.getpwuid(os.getuid()).pw_dir).resolve())
    return found


def foreign(folder: Path, names: Iterable[str]) -> list[Path]:
    """The files at `names` in `folder` that conductor did not write: none when the
    folder is conductor's (see the module's doc). A folder at such a name is not
    listed: a run cannot write there anyway, and says so when it tries."""
    if _ours(folder):
        return []
    found = []
    for name in names:
        with contextlib.suppress(OSError):
            if not stat.S_ISDIR(os.lstat(folder / name).st_mode):
                found.append(folder / name)
    return found


def why_not(folder: Path, exc: OSError | Unfit) -> str:
    """The one line for a logs folder conductor cannot use: Unfit's own, or what
    making or writing it raised (a file in its place, no permission)."""
    if isinstance(exc, Unfit):
        return str(exc)
    return (
        f"cannot use {folder} as the logs folder ({safe_io.why_unusable(folder, exc)}); "
        "point it at a folder conductor can create and write"
    )


def take(folder: Path, names: Iterable[str]) -> None:
    """Take `folder`, whose lock the run holds, as its logs folder: marked as
    conductor's, or Unfit when it holds someone else's files at `names`."""
    found = foreign(folder, names)
    if found:
        them, are = ("it", "is") if len(found) == 1 else ("them", "are")
        raise Unfit(
            f"cannot use {folder} as the logs folder: {', '.join(map(str, found))} {are} "
            f"not conductor's (the folder has no {MARK_NAME}), and a run would replace "
            f"{them}; move {them} away, or point it at a folder of conductor's own"
        )
    mark(folder)


def mark(folder: Path) -> None:
    """Leave conductor's mark in `folder`, which a run has taken (its lock held);
    OSError when it cannot be written."""
    if not _marked(folder):
        safe_io.replace(folder / MARK_NAME, _MARK_TEXT)


def _marked(folder: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(folder / MARK_NAME).st_mode)
    except OSError:
        return False


def _ours(folder: Path) -> bool:
    if _marked(folder):
        return True
    try:  # an earlier conductor's folder: its conductor.log, as conductor writes it
        first = safe_io.read_head(folder / logs.EVENT_LOG, 64)
    except (OSError, ValueError):
        return False
    return _EVENT_LINE.match(first) is not None
