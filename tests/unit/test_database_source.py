"""Where the database suites' database comes from when nothing provides one."""

from __future__ import annotations

import pytest

from conductor import ConductorStack
from tests import database
from tests.database import DatabaseServer, DatabaseUnavailable
from tests.suites import DB_URL_ENV


@pytest.fixture
def postgres_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DB_URL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(database, "find_bindir", lambda: "/usr/lib/postgresql/15/bin")


@pytest.mark.usefixtures("postgres_installed")
def test_no_stack_and_no_url_is_a_usage_error_naming_the_plugin() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"-p no:conductor") as raised:
        DatabaseServer().start(None)
    assert (
        "TEST_DATABASE_URL or DATABASE_URL is not set, and no conductor stack in this run"
        in str(raised.value)
    )


@pytest.mark.usefixtures("postgres_installed")
def test_a_stack_without_db_says_why() -> None:
    stack = ConductorStack(
        mode="surrounding",
        description="",
        logs_dir=None,
        services={},
        env={},
        unavailable={"db": "the surrounding `conductor run` does not provide it"},
    )
    with pytest.raises(DatabaseUnavailable, match="the surrounding `conductor run` does not"):
        DatabaseServer().start(stack)


@pytest.mark.usefixtures("postgres_installed")
@pytest.mark.parametrize("name", DB_URL_ENV)
def test_plain_pytest_takes_the_database_nox_would_take(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule, whichever entry point: DATABASE_URL names the database for plain pytest
    as it does for nox and invoke (suites.given_database), so no db is asked for."""
    monkeypatch.setenv(name, "sqlite://")
    server = DatabaseServer()
    try:
        provision = server.start(None)
    finally:
        server.stop()
    assert provision.backend == "sqlite"
    assert f"because {name} asks for it" in provision.summary
    assert database.given_url() == "sqlite://"
