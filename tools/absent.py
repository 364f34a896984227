"""Run a command on this machine as if some programs had never been installed.

    python3 -m tools.absent chromium,redis-server,postgres -- python3 -m nox -s e2e

A new user's machine lacks Chromium, redis-server or PostgreSQL's server binaries, and
the README promises that its commands still pass there. An environment variable the
code consults would prove nothing about that, so the programs are made absent for
real: in a private mount namespace (unshare(1)), each folder that holds one is covered
by a copy of itself without it, and folders that hold only such a program's files
(`/usr/lib/postgresql`, `/usr/lib/chromium`) by an empty tmpfs. The copies live in a
tmpfs of the namespace's own, mounted on an empty folder this process makes and removes:
nothing outside that namespace changes, and it ends with the command. SIGINT, SIGTERM
and SIGHUP sent to this process are passed on to the command.

Exit status: the command's (128 + N when signal N ended it); 3 when the programs cannot
be hidden here (not root, no unshare, or the kernel refuses a mount namespace), with one
line saying why; 2 for a bad argument or a program still found after hiding it; 127 when
the command is not found, 126 when it cannot be run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

CANNOT_HIDE = 3
NOT_FOUND, NOT_RUNNABLE = 127, 126  # a shell's statuses for a command it cannot run
INSIDE = "--inside-namespace"
PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Hidden:
    """What hiding one program removes: names found on PATH, and whole folders (glob
    patterns: each match is covered by an empty tmpfs)."""

    names: tuple[str, ...]
    folders: tuple[str, ...] = ()
    # environment variables the project reads a path to the program from
    env: tuple[str, ...] = ()


PROGRAMS: dict[str, Hidden] = {
    "chromium": Hidden(("chromium", "chromium-browser"), ("/usr/lib/chromium",), ("CHROMIUM",)),
    "redis-server": Hidden(("redis-server", "redis-check-rdb", "redis-check-aof")),
    # Every folder conductor's find_bindir looks in (conductor.POSTGRES_BIN_FOLDERS less "/bin"; a
    # test holds them equal): this file runs on a Python without conductor.
    "postgres": Hidden(
        ("initdb", "pg_ctl", "postgres", "pg_config", "pg_ctlcluster"),
        (
            "/usr/lib/postgresql",
            "/usr/lib/postgresql/*",
            "/usr/pgsql-*",
            "/opt/homebrew/opt/postgresql@*",
            "/usr/local/opt/postgresql@*",
        ),
    ),
}


def _matches(pattern: str) -> list[Path]:
    """The folders an absolute glob pattern names."""
    return [p for p in Path("/").glob(pattern.lstrip("/")) if p.is_dir()]


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


def _cover_without(work: Path, folder: Path, names: set[str]) -> None:
    """Cover `folder` with a folder of links to its entries, less `names`; the copy and
    the original's view live under `work`, this namespace's own tmpfs."""
    work = Path(tempfile.mkdtemp(prefix="cover-", dir=work))
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
    """The folders a command is looked up in: PATH's, or os.defpath's without one."""
    seen: list[Path] = []
    for part in os.get_exec_path():
        folder = Path(part)
        if part and folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def _named_by_env(programs: Sequence[str]) -> list[Path]:
    """The files the programs' environment variables name that are still there."""
    named = [os.environ.get(var, "") for program in programs for var in PROGRAMS[program].env]
    return [Path(path) for path in named if path and os.path.lexists(path)]


def hide(work: Path, programs: Sequence[str]) -> None:
    """Make `programs` absent in this (already private) mount namespace."""
    _mount("-t", "tmpfs", "tmpfs", str(work))
    names = {name for program in programs for name in PROGRAMS[program].names}
    for folder in _path_folders():
        present = {entry.name for entry in folder.iterdir()} & names
        if present:
            _cover_without(work, folder, present)
    for program in programs:
        for pattern in PROGRAMS[program].folders:
            for empty in _matches(pattern):
                _mount("-t", "tmpfs", "tmpfs", str(empty))
    for named in _named_by_env(programs):
        _cover_without(work, named.parent, {named.name})


def still_found(programs: Sequence[str]) -> list[str]:
    """The programs' files that can still be found: none, or the hiding failed."""
    found = []
    for program in programs:
        hidden = PROGRAMS[program]
        found += [w for name in hidden.names if (w := shutil.which(name))]
        found += [str(f) for p in hidden.folders for f in _matches(p) if any(f.iterdir())]
    return found + [str(path) for path in _named_by_env(programs)]


def _parse(argv: list[str]) -> tuple[list[str], list[str]] | str:
    if len(argv) < 3 or argv[1] != "--":
        return "usage: python3 -m tools.absent PROGRAM[,PROGRAM...] -- COMMAND..."
    programs = [p for p in argv[0].split(",") if p]
    unknown = sorted(set(programs) - set(PROGRAMS))
    if unknown or not programs:
        known = ", ".join(PROGRAMS)
        return f"absent: unknown program {', '.join(unknown) or '(none)'!s}; known: {known}"
    return programs, argv[2:]


@contextlib.contextmanager
def _passing_signals_to(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the child runs, a signal sent to this process is sent to it instead (from
    a terminal, Ctrl-C reaches the whole foreground group: the child has it already)."""

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            if signum != signal.SIGINT or not _from_terminal():
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in PASSED_ON}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _from_terminal() -> bool:
    """Whether this process is in its terminal's foreground group."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _outside(programs: list[str], command: list[str]) -> int:
    """Run the command in a new private mount namespace; its status, as a shell's."""
    why = why_not_here()
    if why is not None:
        print(f"absent: cannot hide {', '.join(programs)}: {why}", file=sys.stderr)
        return CANNOT_HIDE
    work = Path(tempfile.mkdtemp(prefix="absent-"))  # stays empty out here
    unshare = ["unshare", "--mount", "--propagation", "private"]
    here = [sys.executable, "-m", "tools.absent", INSIDE, str(work), ",".join(programs), "--"]
    try:
        child = subprocess.Popen([*unshare, *here, *command])
        with _passing_signals_to(child):
            status = child.wait()
    finally:
        with contextlib.suppress(OSError):
            work.rmdir()
    return 128 - status if status < 0 else status


def _inside(work: Path, programs: list[str], command: list[str]) -> int:
    hide(work, programs)
    found = still_found(programs)
    if found:
        print(f"absent: still found after hiding: {', '.join(found)}", file=sys.stderr)
        return 2
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"absent: {command[0]}: command not found", file=sys.stderr)
        return NOT_FOUND
    except OSError as exc:
        print(f"absent: {command[0]}: cannot run it: {exc.strerror}", file=sys.stderr)
        return NOT_RUNNABLE


def main(argv: list[str]) -> int:
    inside = len(argv) > 1 and argv[0] == INSIDE
    parsed = _parse(argv[2:] if inside else argv)
    if isinstance(parsed, str):
        print(parsed, file=sys.stderr)
        return 2
    programs, command = parsed
    if inside:
        return _inside(Path(argv[1]), programs, command)
    return _outside(programs, command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
