"""Finding PostgreSQL's server binaries, and which major version each folder holds.

Looked up once per process: it may run `pg_config` and `postgres --version`, and every
plan asks. Without `version`, the first folder found wins (PATH, then `pg_config
--bindir`, then the packagers' folders, newest first); with it, the first folder of
that major version.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

SERVER_BINARIES = ("initdb", "postgres")
# Where packages put each version's binaries: Debian/Ubuntu, PGDG on RHEL, Homebrew.
POSTGRES_BIN_FOLDERS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
MISSING = (
    "PostgreSQL server binaries (initdb, postgres) were not found on PATH, through "
    "`pg_config --bindir`, or in /usr/lib/postgresql/*/bin; install them (Debian: "
    "apt-get install postgresql) or point the tests at an existing server with "
    "TEST_DATABASE_URL / DATABASE_URL"
)


def _on_path() -> list[Path]:
    on_path = shutil.which("postgres")
    return [Path(on_path).resolve().parent, Path(on_path).parent] if on_path else []


def _usable(folders: list[Path]) -> list[Path]:
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique and all((folder / n).is_file() for n in SERVER_BINARIES):
            unique.append(folder)
    return unique


@functools.cache
def candidates() -> tuple[Path, ...]:
    """Every folder holding the server binaries, in order of preference."""
    found = _on_path()
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            found.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    for pattern in POSTGRES_BIN_FOLDERS:
        found += sorted(Path("/").glob(pattern.lstrip("/")), key=_number_in, reverse=True)
    return tuple(_usable(found))


def _number_in(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(folder)))


@functools.cache
def major(bindir: Path) -> str | None:
    """The major version of the server in `bindir` ("15"; "9.6" before 10), or None."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", out)
    if match is None:
        return None
    first, second = match.groups()
    return first if int(first) >= 10 or second is None else f"{first}.{second}"


def find_bindir(version: str | None = None) -> Path | None:
    """The folder of the server binaries to use, of major `version` when given."""
    if version is None:
        # PATH comes first anyway: when it has them, no pg_config to run (~20 ms).
        for folder in _usable(_on_path()):
            return folder
    for folder in candidates():
        if version is None or major(folder) == version:
            return folder
    return None


def installed() -> list[str]:
    """The major versions found, newest first."""
    versions = {v for v in map(major, candidates()) if v is not None}
    return sorted(versions, key=lambda v: tuple(int(n) for n in v.split(".")), reverse=True)


def missing(version: str | None) -> str | None:
    """Why no binaries can be used (MISSING, or the version is not installed), or None."""
    if find_bindir(version) is not None:
        return None
    if version is None or not candidates():
        return MISSING
    return (
        f"PostgreSQL {version} is not installed here (installed: {', '.join(installed())}); "
        f"install it (Debian: apt-get install postgresql-{version}) or set version to one "
        "of those"
    )
