"""Alembic, driven from code: the application, the tests and the E2E stack build the
schema the same way, with `alembic upgrade head`."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from genesis.db import make_engine
from genesis.settings import async_url

SCRIPT_LOCATION = "genesis:migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # `%` is ConfigParser's interpolation character; URLs may carry it (quoted passwords).
        config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade_connection(connection: AsyncConnection, revision: str = "head") -> None:
    """Migrate over an open connection, from inside a running event loop."""

    def _upgrade(sync_connection: Connection) -> None:
        command.upgrade(alembic_config(connection=sync_connection), revision)

    await connection.run_sync(_upgrade)


async def upgrade_async(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await upgrade_connection(connection, revision)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate `url` to `revision` (no event loop may be running in this thread)."""
    asyncio.run(upgrade_async(url, revision))
