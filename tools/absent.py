"""Run a command on this machine as if some programs had never been installed.

    python3 -m tools.absent chromium,redis-server,postgres -- python3 -m nox -s e2e

A new user's machine lacks Chromium, redis-server or PostgreSQL's server binaries, and
the README promises that its commands still pass there. An environment variable the
code consults would prove nothing about that, so the programs are made absent for
real: in a private mount namespace (unshare(1)), each folder that holds one is covered
by a copy of itself without it, and folders that hold only such a program's files
(`/usr/lib/postgresql`, `/usr/lib/chromium`) by an empty tmpfs. Nothing outside that
namespace changes, and it ends with the command.

Exit status: the command's; 3 when the programs cannot be hidden here (not root, no
unshare, or the kernel refuses a mount namespace), with one line saying why; 2 for a
bad argument or a program still found after hiding it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CANNOT_HIDE = 3
INSIDE = "--inside-namespace"


@dataclass(frozen=True)
class Hidden:
    """What hiding one program removes: names found on PATH, and whole folders."""

    names: tuple[str, ...]
    folders: tuple[str, ...] = ()


PROGRAMS: dict[str, Hidden] = {
    "chromium": Hidden(("chromium", "chromium-browser"), ("/usr/lib/chromium",)),
    "redis-server": Hidden(("redis-server", "redis-check-rdb", "redis-check-aof")),
    "postgres": Hidden(
        ("initdb", "pg_ctl", "postgres", "pg_config", "pg_ctlcluster"), ("/usr/lib/postgresql",)
    ),
}


def why_not_here() -> str | None:
    """Why programs cannot be hidden on this machine, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "hiding programs needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "hiding programs needs root (a private mount namespace with bind mounts)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "hiding programs needs unshare(1) and mount(8) (Debian: util-linux, mount)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        lines = (probe.stderr.strip() or "no reason given").splitlines()
        return f"this kernel refuses a private mount namespace: {lines[-1]}"
    return None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _cover_without(folder: Path, names: set[str]) -> None:
    """Cover `folder` with a folder of links to its entries, less `names`."""
    work = Path(tempfile.mkdtemp(prefix="absent-"))
    original, copy = work / "original", work / "copy"
    original.mkdir()
    copy.mkdir()
    _mount("--bind", str(folder), str(original))
    for entry in original.iterdir():
        if entry.name in names:
            continue
        target = os.readlink(entry) if entry.is_symlink() else str(entry)
        (copy / entry.name).symlink_to(target)
    _mount("--bind", str(copy), str(folder))


def _path_folders() -> list[Path]:
    seen: list[Path] = []
    for part in os.environ.get("PATH", "").split(os.pathsep):
        folder = Path(part)
        if part and folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def hide(programs: Sequence[str]) -> None:
    """Make `programs` absent in this (already private) mount namespace."""
    names = {name for program in programs for name in PROGRAMS[program].names}
    for folder in _path_folders():
        present = {entry.name for entry in folder.iterdir()} & names
        if present:
            _cover_without(folder, present)
    for program in programs:
        for empty in PROGRAMS[program].folders:
            if Path(empty).is_dir():
                _mount("-t", "tmpfs", "tmpfs", empty)


def still_found(programs: Sequence[str]) -> list[str]:
    """The programs' files that can still be found: none, or the hiding failed."""
    found = []
    for program in programs:
        hidden = PROGRAMS[program]
        found += [w for name in hidden.names if (w := shutil.which(name))]
        found += [f for f in hidden.folders if Path(f).is_dir() and any(Path(f).iterdir())]
    return found


def _parse(argv: list[str]) -> tuple[list[str], list[str]] | str:
    if len(argv) < 3 or argv[1] != "--":
        return "usage: python3 -m tools.absent PROGRAM[,PROGRAM...] -- COMMAND..."
    programs = [p for p in argv[0].split(",") if p]
    unknown = sorted(set(programs) - set(PROGRAMS))
    if unknown or not programs:
        known = ", ".join(PROGRAMS)
        return f"absent: unknown program {', '.join(unknown) or '(none)'!s}; known: {known}"
    return programs, argv[2:]


def main(argv: list[str]) -> int:
    inside = bool(argv) and argv[0] == INSIDE
    parsed = _parse(argv[1:] if inside else argv)
    if isinstance(parsed, str):
        print(parsed, file=sys.stderr)
        return 2
    programs, command = parsed
    if not inside:
        why = why_not_here()
        if why is not None:
            print(f"absent: cannot hide {', '.join(programs)}: {why}", file=sys.stderr)
            return CANNOT_HIDE
        unshare = ["unshare", "--mount", "--propagation", "private"]
        here = [sys.executable, "-m", "tools.absent", INSIDE, ",".join(programs), "--"]
        return subprocess.run([*unshare, *here, *command], check=False).returncode
    hide(programs)
    found = still_found(programs)
    if found:
        print(f"absent: still found after hiding: {', '.join(found)}", file=sys.stderr)
        return 2
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
