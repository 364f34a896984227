"""Which folder may be a logs folder.

A logs folder is named by the user, often through a variable: `--logs-dir "$LOGS/"`
with LOGS unset is `/`, and `--logs-dir "$LOGS"` is empty (the working folder). So the
root folder, the user's home and an empty name are refused outright.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from conductor.files import safe_io


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


def why_not(folder: Path, exc: OSError | Unfit) -> str:
    """The one line for a logs folder conductor cannot use: Unfit's own, or what
    making or writing it raised (a file in its place, no permission)."""
    if isinstance(exc, Unfit):
        return str(exc)
    return (
        f"cannot use {folder} as the logs folder ({safe_io.why_unusable(folder, exc)}); "
        "point it at a folder conductor can create and write"
    )
