"""The one engine factory: the API, the prestart task and Alembic connect the same way."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import DatabaseSettings

# A connection attempt that hangs (a firewall, a stopped server) fails in seconds, so
# neither /health nor the prestart task waits out conductor's ready_timeout.
CONNECT_TIMEOUT = 5.0


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        settings.async_database_url,
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT},
    )


def one_line(exc: BaseException) -> str:
    """The driver's own words on one line (SQLAlchemy appends a line of links), so a
    log line carries the cause that conductor's fail.log and log tail show."""
    first = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first}"
