"""What the template's prestart.sh does, as one program conductor runs as a task:
check the database, `alembic upgrade head`, create the first superuser.

No shell and no retry loop: conductor starts this only once `db` is ready
(`depends_on`), so one failed connection is a real error (a wrong password, a missing
database) and exits non-zero at once, which fails the run with this log's tail, instead
of retrying for minutes as backend_pre_start.py does under docker compose.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from app.db import make_engine, one_line
from app.seed import seed
from app.settings import Settings, from_environment

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


async def check_database(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("select 1"))
    finally:
        await engine.dispose()


def main() -> int:
    settings = from_environment("prestart")
    try:
        asyncio.run(check_database(settings))
    except Exception as exc:  # any failure to connect is this one line, not a traceback
        print(f"prestart: database unavailable: {one_line(exc)}", file=sys.stderr)
        return 1
    print("prestart: database ok; running alembic upgrade head", flush=True)
    try:
        command.upgrade(Config(str(ALEMBIC_INI)), "head")
    except Exception as exc:  # the cause as the log tail's last line, e.g. no schema app
        print(f"prestart: alembic upgrade head failed: {one_line(exc)}", file=sys.stderr)
        return 1
    asyncio.run(seed(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
