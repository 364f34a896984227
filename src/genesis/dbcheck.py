"""Why a database connection failed, in words a person can act on.

Shared by scripts/test_db_connection.py (stage 1 of the staged rebuild) and by
`python -m genesis serve --migrate`, so a service that cannot reach its database
says the same thing in its log as the check says on the terminal.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url

from genesis.db import make_engine
from genesis.settings import async_url

STEPS_TIMEOUT = 15.0


@dataclass
class Target:
    """The parts of a URL that are safe to print."""

    driver: str
    host: str
    port: str
    database: str
    user: str


def describe(url: str) -> Target:
    parsed = make_url(async_url(url))
    return Target(
        driver=parsed.drivername,
        host=parsed.host or "localhost",
        port=str(parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else "")),
        database=parsed.database or "",
        user=parsed.username or "",
    )


def diagnose(exc: BaseException, target: Target) -> str:
    """A sentence a person can act on, from whatever the driver raised."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    where = f"{target.host}:{target.port}" if target.port else target.host
    for e in chain:
        if isinstance(e, ModuleNotFoundError):
            module = e.name or "the driver"
            return (
                f"driver not installed: the Python package {module!r} for {target.driver} "
                f"is missing; install it (pip install {module})"
            )
    if "NoSuchModuleError" in names:
        return (
            f"driver not installed: SQLAlchemy has no driver {target.driver!r}; "
            "use postgresql:// (asyncpg) or sqlite:// (aiosqlite)"
        )
    if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
        return (
            f"authentication failed for user {target.user!r} at {where}: "
            "check the user name and password in the URL"
        )
    if "InvalidCatalogNameError" in names:
        return (
            f"database missing: {target.database!r} does not exist at {where}; "
            f"create it (createdb -h {target.host} -p {target.port} {target.database}) "
            "or fix the URL"
        )
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f"name does not resolve: host {target.host!r} is unknown; check the URL's host"
        if isinstance(e, ConnectionRefusedError):
            return (
                f"connection refused at {where}: no server is listening there; "
                "start it (nox -s db starts a throwaway one) or fix the port"
            )
        if isinstance(e, TimeoutError):
            return (
                f"timed out after {STEPS_TIMEOUT:g}s connecting to {where}: "
                "the host does not answer; check firewalls and the host name"
            )
        if isinstance(e, OSError) and e.errno is not None:
            return f"could not connect to {where}: {e.strerror or e}"
    if "OperationalError" in names and target.driver.startswith("sqlite"):
        return f"cannot open the SQLite file {target.database!r}: check that its folder exists"
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


async def check(url: str) -> str:
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        async with asyncio.timeout(STEPS_TIMEOUT), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            if connection.dialect.name == "postgresql":
                version = await connection.scalar(text("SHOW server_version"))
            else:
                version = await connection.scalar(text("SELECT sqlite_version()"))
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        await engine.dispose()
    return f"{version} in {elapsed:.1f} ms"
