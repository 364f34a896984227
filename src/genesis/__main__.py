"""`python -m genesis migrate|serve`: what the E2E stack's backend service runs.

`serve --migrate` applies the migrations first, so one service both builds the schema
and serves, and a database that refuses the migration fails the service at once.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genesis")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the Alembic migrations to DATABASE_URL")
    serve = sub.add_parser("serve", help="serve the API with Uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5004, help="port to bind (default 5004)")
    serve.add_argument("--migrate", action="store_true", help="apply the migrations first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from genesis.dbcheck import describe, diagnose
    from genesis.migrate import upgrade
    from genesis.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"genesis: {bad_setting(exc)}", file=sys.stderr)
        return 2
    if args.command == "migrate" or args.migrate:
        try:
            upgrade(settings.database_url)
        except (SQLAlchemyError, OSError, TimeoutError, ImportError) as exc:
            reason = diagnose(exc, describe(settings.database_url), "DATABASE_URL")
            print(f"genesis: migrating the database failed: {reason}", file=sys.stderr)
            print(
                "genesis: fix DATABASE_URL; scripts/test_db_connection.py checks it",
                file=sys.stderr,
            )
            return 1
        if args.command == "migrate":
            return 0

    import uvicorn

    from genesis.main import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def bad_setting(exc: ValidationError) -> str:
    """The first bad setting as its environment variable, the value given, what it takes."""
    error = exc.errors()[0]
    name = ".".join(str(part) for part in error["loc"]).upper()
    return f"{name}={error.get('input')!r}: {error['msg']}; fix it in the environment"


if __name__ == "__main__":
    sys.exit(main())
