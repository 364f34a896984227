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

# The asyncio drivers SQLAlchemy has for each database, and the package each needs.
ASYNC_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("postgresql+asyncpg", "asyncpg"), ("postgresql+psycopg", "psycopg[binary]")),
    "mysql": (("mysql+aiomysql", "aiomysql"), ("mysql+asyncmy", "asyncmy")),
    "mariadb": (("mariadb+aiomysql", "aiomysql"), ("mariadb+asyncmy", "asyncmy")),
    "sqlite": (("sqlite+aiosqlite", "aiosqlite"),),
    "mssql": (("mssql+aioodbc", "aioodbc"),),
    "oracle": (("oracle+oracledb", "oracledb"),),
}
# Driver modules (and SQLAlchemy driver names) whose package on PyPI is named otherwise:
# "pip install MySQLdb" fails.
PACKAGES = {
    "MySQLdb": "mysqlclient",
    "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL",
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "cx_Oracle": "cx-Oracle",
    "pysqlite": "sqlite3, in the standard library",
}


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


def _sync_driver(driver: str) -> str | None:
    """The driver's name when SQLAlchemy knows it and asyncio cannot use it."""
    try:
        url = make_url(f"{driver}://")
        dialect = url.get_dialect()
        if dialect.get_async_dialect_cls(url).is_async:
            return None
    except Exception:  # an unknown driver: NoSuchModuleError, said below
        return None
    return str(dialect.driver)


def _pip(package: str) -> str:
    """The install command as a shell takes it (zsh globs the brackets of an extra)."""
    return f"pip install '{package}'" if "[" in package else f"pip install {package}"


def _not_async(target: Target, driver: str) -> str:
    package = PACKAGES.get(driver, driver)
    backend = target.driver.partition("+")[0]
    choices = " or ".join(
        f"{name}:// ({_pip(needs)})" for name, needs in ASYNC_DRIVERS.get(backend, ())
    )
    return (
        f"driver not async: {target.driver}:// means the {driver} driver ({package}), which "
        "this asyncio application cannot use; "
        + (f"write {choices}" if choices else "use postgresql:// or sqlite://")
    )


def diagnose(exc: BaseException, target: Target, source: str = "the URL") -> str:
    """A sentence a person can act on, from whatever the driver raised; `source` is
    where the URL came from (an environment variable's name), for the fix."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    where = f"{target.host}:{target.port}" if target.port else target.host
    sync_driver = _sync_driver(target.driver)
    if sync_driver is not None:  # installing its module would not help
        return _not_async(target, sync_driver)
    for e in chain:
        if isinstance(e, ModuleNotFoundError):
            module = e.name or "the driver"
            return (
                f"driver not installed: the Python module {module!r} for {target.driver} "
                f"is missing; install it ({_pip(PACKAGES.get(module, module))})"
            )
    if "NoSuchModuleError" in names:
        return (
            f"driver not installed: SQLAlchemy has no driver {target.driver!r}; "
            "use postgresql:// (asyncpg) or sqlite:// (aiosqlite)"
        )
    if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
        return (
            f"authentication failed for user {target.user!r} at {where}: "
            f"check the user name and password in {source}"
        )
    if "InvalidCatalogNameError" in names:
        return (
            f"database missing: {target.database!r} does not exist at {where}; "
            f"create it (createdb -h {target.host} -p {target.port} {target.database}) "
            f"or fix {source}"
        )
    for e in chain:
        if isinstance(e, socket.gaierror):
            return (
                f"name does not resolve: host {target.host!r} is unknown; "
                f"check the host in {source}"
            )
        if isinstance(e, ConnectionRefusedError):
            return (
                f"connection refused at {where}: no server is listening there; "
                f"start it or fix the port in {source}"
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
