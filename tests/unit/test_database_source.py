"""Where the database suites' database comes from when nothing provides one."""

from __future__ import annotations

import pytest

from conductor.pytest_stack import ConductorStack
from tests import database
from tests.database import DatabaseServer, DatabaseUnavailable


@pytest.fixture
def postgres_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(database.URL_ENV, raising=False)
    monkeypatch.setattr(database, "find_bindir", lambda: "/usr/lib/postgresql/15/bin")


@pytest.mark.usefixtures("postgres_installed")
def test_no_stack_and_no_url_is_a_usage_error_naming_the_plugin() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"-p no:conductor") as raised:
        DatabaseServer().start(None)
    assert "TEST_DATABASE_URL is not set, and no conductor stack in this run" in str(raised.value)


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
