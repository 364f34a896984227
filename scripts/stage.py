#!/usr/bin/env python3
"""One stage of the staged rebuild: optionally the database check, then the tests.

    python scripts/stage.py [--check-db] -- python -m pytest tests/auth ...

Runs inside `conductor run`, so TEST_DATABASE_URL already points at the database
conductor started. Without PostgreSQL's server binaries conductor skips its optional
db and the suites run on SQLite (tests/database.py), so that is what the check checks.
The test command replaces this process (exec), so conductor's signals and exit status
reach pytest directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fallback() -> list[str]:
    """The URL to check when none is given and PostgreSQL is not installed: the SQLite
    the database suites then use; otherwise none (the check asks for one)."""
    if any(os.environ.get(name) for name in ("TEST_DATABASE_URL", "DATABASE_URL")):
        return []
    from conductor import find_bindir

    if find_bindir() is not None:
        return []
    print("stage: no PostgreSQL server binaries here; checking SQLite, which the suites use")
    return ["sqlite+aiosqlite://"]


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("stage: usage: stage.py [--check-db] -- COMMAND ...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="stage.py")
    parser.add_argument("--check-db", action="store_true", help="run test_db_connection.py first")
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1 :]
    if args.check_db:
        sys.path.insert(0, str(HERE))
        import test_db_connection

        status = test_db_connection.main(_fallback())
        if status != 0:
            print("stage: the database check failed; the tests were not run", file=sys.stderr)
            return status
    if not command:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"stage: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
