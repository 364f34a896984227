"""The async database foundation every database suite stands on.

One event loop for the whole session (both pytest-asyncio loop-scope defaults are
`session` in pyproject.toml), one engine created and disposed on it, and per test a
connection with an outer transaction that is always rolled back. The application sees
an `AsyncSession(join_transaction_mode="create_savepoint")` on that connection, so its
own commits and rollbacks stay inside the test's transaction. Nothing here creates an
engine or a session at import time or on another loop: that is what used to produce
"attached to a different loop" RuntimeErrors and asyncpg InterfaceErrors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from conductor import stack_of
from genesis.db import get_session, make_engine
from genesis.main import create_app
from genesis.settings import Settings
from tests.database import (
    WORKER_KEY,
    DatabaseServer,
    DatabaseUnavailable,
    Provision,
    WorkerDatabase,
    given_url,
)
from tests.optional import CHROMIUM, needs_browser
from tests.suites import DATABASE_FOLDERS, FOLDER_MARKERS, services_for_folders

TESTS = Path(__file__).resolve().parent
SECRET = "test-secret-key-that-is-long-enough-for-hs256"
_server_key = pytest.StashKey[DatabaseServer]()
_provision_key = pytest.StashKey[Provision]()


# --- the run: services by folder, markers by folder, and the database -------------
def _selected_folders(config: pytest.Config) -> set[str]:
    """The folders of tests/ that the run's paths can reach (so `pytest tests/unit`
    never starts PostgreSQL, and `pytest tests` starts what every folder needs)."""
    base = config.invocation_params.dir
    targets = [(base / a.split("::", 1)[0]).resolve() for a in config.args] or [TESTS]
    folders = set()
    for folder in FOLDER_MARKERS:
        path = TESTS / folder
        if any(t == path or t in path.parents or path in t.parents for t in targets):
            folders.add(folder)
    return folders


@pytest.hookimpl(optionalhook=True)
def pytest_conductor_services(config: pytest.Config) -> list[str]:
    """conductor's plugin starts what the selected folders need, once for the run (the
    database unless TEST_DATABASE_URL names one; the whole stack for tests/e2e)."""
    if config.option.help or config.option.collectonly:
        return []
    return services_for_folders(_selected_folders(config), database_given=bool(given_url()))


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller set things up
        raw = config.workerinput.get(WORKER_KEY)
        if raw:
            config.stash[_provision_key] = Provision.loads(raw)
        return
    if config.option.help or config.option.collectonly:
        return
    if not _selected_folders(config) & DATABASE_FOLDERS:
        return
    server = DatabaseServer()
    config.stash[_server_key] = server
    try:
        # conductor's plugin (tryfirst) has started the stack, with db, by now.
        config.stash[_provision_key] = server.start(stack_of(config))
    except DatabaseUnavailable as exc:
        server.stop()
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_server_key, None)
    if server is not None:
        server.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    provision = node.config.stash.get(_provision_key, None)  # type: ignore[attr-defined]
    if provision is not None:
        node.workerinput[WORKER_KEY] = provision.dumps()  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str | None:
    provision = config.stash.get(_provision_key, None)
    return provision.summary if provision is not None else None


def pytest_sessionstart(session: pytest.Session) -> None:
    """-q hides the header; the SQLite fallback is still said once, at the top."""
    config = session.config
    provision = config.stash.get(_provision_key, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    quiet = config.get_verbosity() < 0
    controller = not hasattr(config, "workerinput")
    if provision and provision.backend == "sqlite" and quiet and reporter and controller:
        reporter.write_line(provision.summary)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).resolve()
        if not path.is_relative_to(TESTS):  # conductor's own tests mark themselves
            continue
        parts = path.relative_to(TESTS).parts
        if parts and parts[0] in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[parts[0]])


@pytest.hookimpl(tryfirst=True)  # before any fixture is set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that asks pytest-playwright-asyncio for a browser, anywhere in tests/,
    skips without Chromium: the plugin would otherwise launch Playwright's own browser
    build, which is never downloaded here."""
    if needs_browser(item):
        CHROMIUM.skip_unless_present()


# --- the session: one engine on the one loop ----------------------------------------
@pytest.fixture(scope="session")
def provision(pytestconfig: pytest.Config) -> Provision:
    found = pytestconfig.stash.get(_provision_key, None)
    if found is None:
        pytest.fail("no test database was set up for this run (is tests/conftest.py loaded?)")
    return found


@pytest.fixture(scope="session")
async def database_url(provision: Provision, worker_id: str) -> AsyncIterator[str]:
    """This worker's own database, cloned from the migrated template."""
    database = WorkerDatabase(provision, worker_id)
    url = await database.create()
    try:
        yield url
    finally:
        await database.drop()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def backend(provision: Provision) -> str:
    return provision.backend


# --- the test: a connection, an outer transaction, a savepoint session --------------
@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
async def db_session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    session = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        await session.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=SECRET,
        orchestrator_url="http://127.0.0.1:9",  # never reached: tests inject a fake
        redis_url=None,
        password_hash_profile="CHEAPEST",  # a test stack's cost; production's is the default
    )


@pytest.fixture
def app(settings: Settings, db_session: AsyncSession) -> Iterator[FastAPI]:
    """The application, with its session dependency bound to the test's transaction.

    One connection serves one operation at a time, so requests that run concurrently
    in a test take turns on it (as they would each take their own connection from a
    pool in production) instead of tripping asyncpg's "another operation is in
    progress"."""
    application = create_app(settings)
    turn = asyncio.Lock()

    async def session_in_test_transaction() -> AsyncIterator[AsyncSession]:
        async with turn:
            yield db_session

    application.dependency_overrides[get_session] = session_in_test_transaction
    yield application
    application.dependency_overrides.clear()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://genesis.test") as client:
        yield client


# --- people: a registered, logged-in user in one call --------------------------------
class User:
    """A registered user of the app under test, with the headers of a fresh login."""

    def __init__(self, email: str, password: str, user_id: int, token: str) -> None:
        self.email = email
        self.password = password
        self.id = user_id
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}


async def register_and_login(
    client: httpx.AsyncClient, email: str, password: str = "correct horse battery"
) -> User:
    registered = await client.post(
        "/api/auth/register", json={"email": email, "password": password}
    )
    assert registered.status_code == 201, registered.text
    login = await client.post("/api/auth/login", data={"username": email, "password": password})
    assert login.status_code == 200, login.text
    return User(email, password, registered.json()["id"], login.json()["access_token"])


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "alice@example.com")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "bob@example.com")
