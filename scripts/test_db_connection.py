#!/usr/bin/env python3
"""Stage 1 of the staged rebuild: can we reach the database the application would use?

    python scripts/test_db_connection.py [URL]     (default: TEST_DATABASE_URL, DATABASE_URL)

Connects with the application's own engine settings (genesis.db.make_engine), runs
SELECT 1, reads the server version, and prints one line. On failure it names the step
that failed and what to do, and exits 1. A password is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from genesis.dbcheck import check, describe, diagnose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument(
        "url", nargs="?", help="database URL (default: TEST_DATABASE_URL, DATABASE_URL)"
    )
    args = parser.parse_args(argv)
    source, url = "the URL", args.url
    for name in ("TEST_DATABASE_URL", "DATABASE_URL"):
        if not url and os.environ.get(name):
            source, url = name, os.environ[name]
    if not url:
        print(
            "database check: no URL; pass one, set TEST_DATABASE_URL or DATABASE_URL, "
            "or run nox -s db (it starts a throwaway database, then checks it)",
            file=sys.stderr,
        )
        return 2
    try:
        target = describe(url)
    except Exception as exc:  # an unparseable URL: say so without echoing it
        print(f"database check: the URL cannot be parsed ({type(exc).__name__})", file=sys.stderr)
        return 2
    what = (
        f"driver={target.driver} host={target.host} database={target.database}"
        if not target.driver.startswith("sqlite")
        else f"driver={target.driver} database={target.database or ':memory:'}"
    )
    try:
        result = asyncio.run(check(url))
    except Exception as exc:
        print(f"database check FAILED ({what}): {diagnose(exc, target, source)}", file=sys.stderr)
        return 1
    print(f"database check ok: {what} server={result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
