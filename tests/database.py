"""The test database for one pytest run, shared correctly by xdist workers.

The controller process (the only process without xdist) settles the server once:
TEST_DATABASE_URL when set, else the `db` service of the run's conductor stack (a
throwaway PostgreSQL cluster that conductor's pytest plugin starts for the database
folders, tests/conftest.py asks for it), else SQLite when this machine has no PostgreSQL
server binaries. It migrates a template database with Alembic once, and each worker
clones the template into a database of its own, so `-n 2` never shares rows between
workers. The template is dropped when the run ends; the plugin then stops the cluster.

On a shared server (TEST_DATABASE_URL), a run killed with SIGKILL cannot drop its
databases. Each run therefore keeps a session named after it open for as long as it
lives, and the next run drops the databases of any run whose session is gone.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import make_url

from conductor import ConductorStack, HeldInThread, find_bindir, quote_ident
from genesis.db import make_engine
from genesis.migrate import upgrade_async
from genesis.settings import async_url
from tests.suites import DB_URL_ENV, given_database, given_database_url

WORKER_KEY = "genesis_database"
# application_name of the session a run keeps open while it lives.
SESSION_PREFIX = "genesis-tests-"
# What a run creates: genesis_tpl_RUN, and genesis_RUN_WORKER per xdist worker.
RUN_DATABASE = re.compile(
    r"genesis_tpl_(?P<run>[0-9a-f]{8})|genesis_(?P<r>[0-9a-f]{8})_(?:gw\d+|master)"
)


class DatabaseUnavailable(Exception):
    """The test database cannot be set up; the message says what to do."""


@dataclass(frozen=True)
class Provision:
    """What a worker needs to make its own database: picklable, so xdist can send it."""

    backend: Literal["postgresql", "sqlite"]
    server_url: str  # postgresql: the maintenance database; sqlite: unused
    template: str  # postgresql: a database name; sqlite: a file
    run_id: str
    summary: str

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> Provision:
        return cls(**json.loads(raw))


def _with_database(url: str, name: str) -> str:
    return make_url(async_url(url)).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, *statements: str) -> None:
    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@asynccontextmanager
async def run_session(server_url: str, run_id: str) -> AsyncIterator[None]:
    """A session named after this run, open for as long as the block lasts.
    pg_stat_activity lists it server-wide, whatever database another run connects to,
    and PostgreSQL ends it when the client dies, SIGKILL included: an open session is
    how a later run knows this run's databases are still in use."""
    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": SESSION_PREFIX + run_id},
            )
            yield
    finally:
        await engine.dispose()


async def drop_abandoned(server_url: str, own_run: str) -> list[str]:
    """Drop the databases of earlier runs that died without cleaning up: those whose
    run has no session open. A live run's databases are left alone."""
    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    dropped: list[str] = []
    try:
        async with engine.connect() as connection:
            # Databases first, sessions second: a run opens its session before it
            # creates a database, so a live run behind any name listed here shows up.
            names = await connection.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'genesis%'")
            )
            abandoned = []
            for name in sorted(names.scalars()):
                match = RUN_DATABASE.fullmatch(name)
                run = match and (match["run"] or match["r"])
                if run and run != own_run:
                    abandoned.append((name, SESSION_PREFIX + run))
            sessions = await connection.execute(
                text(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE :p"
                ),
                {"p": SESSION_PREFIX + "%"},
            )
            alive = set(sessions.scalars())
            for name, session in abandoned:
                if session not in alive:
                    await connection.execute(
                        text(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
                    )
                    dropped.append(name)
    finally:
        await engine.dispose()
    return dropped


def given_url() -> str:
    """The database the run was given (TEST_DATABASE_URL, or DATABASE_URL), or ""."""
    return given_database_url() or ""


class DatabaseServer:
    """The controller's side: server, template, and clean-up at the end of the run."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.session: HeldInThread[None] | None = None
        self.tempdir: Path | None = None
        self.provision: Provision | None = None

    def start(self, stack: ConductorStack | None) -> Provision:
        """Settle the server: the given URL, the stack's db, or SQLite without PostgreSQL."""
        named = given_database()
        if named and named[1].startswith("sqlite"):
            return self._sqlite(f"SQLite, because {named[0]} asks for it")
        if named:
            return self._postgres(named[1], f"PostgreSQL from {named[0]}")
        if stack is not None and stack.has("db"):
            url = stack.url("db")
            host_port = url.rsplit("@", 1)[-1].split("/", 1)[0]
            return self._postgres(url, f"PostgreSQL, conductor's throwaway cluster at {host_port}")
        if find_bindir() is None:
            return self._sqlite(
                "SQLite: no PostgreSQL server binaries on this machine (install Debian's "
                f"postgresql, or set {DB_URL_ENV[0]}, to test on PostgreSQL)"
            )
        why = stack.why_missing("db") if stack is not None else "no conductor stack in this run"
        raise DatabaseUnavailable(
            f"no database for the database suites: {' or '.join(DB_URL_ENV)} is not set, "
            f"and {why} "
            "(is conductor's pytest plugin turned off with -p no:conductor?)"
        )

    def _sqlite(self, why: str) -> Provision:
        self.tempdir = Path(tempfile.mkdtemp(prefix="genesis-tests-"))
        template = self.tempdir / "template.db"
        asyncio.run(upgrade_async(f"sqlite+aiosqlite:///{template}"))
        self.provision = Provision("sqlite", "", str(template), self.run_id, f"database: {why}")
        return self.provision

    def _postgres(self, url: str, why: str) -> Provision:
        template = f"genesis_tpl_{self.run_id}"
        dropped: list[str] = []

        async def build() -> None:
            dropped.extend(await drop_abandoned(url, self.run_id))
            await _admin(url, f"CREATE DATABASE {quote_ident(template)}")
            await upgrade_async(_with_database(url, template))

        try:
            # The session first: from then on no other run takes our databases for
            # abandoned.
            session = HeldInThread(lambda: run_session(url, self.run_id), "run-session")
            session.__enter__()
            self.session = session
            asyncio.run(build())
        except Exception as exc:
            raise DatabaseUnavailable(
                f"could not create and migrate the template database on {why}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                "run scripts/test_db_connection.py to diagnose"
            ) from None
        summary = f"database: {why} (template {template})"
        if dropped:
            summary += f"; dropped {len(dropped)} database(s) of killed runs: {', '.join(dropped)}"
        self.provision = Provision("postgresql", url, template, self.run_id, summary)
        return self.provision

    def stop(self) -> None:
        try:
            if self.provision is not None and self.provision.backend == "postgresql":
                provision = self.provision
                self.provision = None
                asyncio.run(
                    _admin(
                        provision.server_url,
                        f"DROP DATABASE IF EXISTS {quote_ident(provision.template)} WITH (FORCE)",
                    )
                )
        finally:
            if self.session is not None:
                self.session.close()
                self.session = None
            if self.tempdir is not None:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                self.tempdir = None


class WorkerDatabase:
    """A worker's own database, cloned from the migrated template."""

    def __init__(self, provision: Provision, worker: str) -> None:
        self.provision = provision
        self.name = f"genesis_{provision.run_id}_{worker}"
        self.url = ""

    async def create(self) -> str:
        p = self.provision
        if p.backend == "sqlite":
            clone = Path(p.template).with_name(f"{self.name}.db")
            shutil.copyfile(p.template, clone)
            self.url = f"sqlite+aiosqlite:///{clone}"
        else:
            await _admin(
                p.server_url,
                f"DROP DATABASE IF EXISTS {quote_ident(self.name)} WITH (FORCE)",
                f"CREATE DATABASE {quote_ident(self.name)} TEMPLATE {quote_ident(p.template)}",
            )
            self.url = _with_database(p.server_url, self.name)
        return self.url

    async def drop(self) -> None:
        p = self.provision
        if p.backend == "sqlite":
            Path(p.template).with_name(f"{self.name}.db").unlink(missing_ok=True)
        else:
            await _admin(
                p.server_url, f"DROP DATABASE IF EXISTS {quote_ident(self.name)} WITH (FORCE)"
            )
