"""The live stack's addresses, from the environment conductor gives the tests.

No fixture here starts anything: `conductor run --config conductor.toml -- pytest`
did. Run bare, the suite stops at once and says how to run it, rather than testing
whatever happens to listen on localhost.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

NEEDED = ("API_URL", "WEB_URL", "DATABASE_URL", "FIRST_SUPERUSER", "FIRST_SUPERUSER_PASSWORD")


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            f"{', '.join(missing)} not set: run this suite through conductor, from "
            "examples/fullstack: conductor run --config conductor.toml -- pytest"
        )


def query(sql: str, *args: object) -> list[Any]:
    """Rows of one query on the stack's database (asyncpg, outside the app's code)."""

    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(os.environ["DATABASE_URL"], timeout=10)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=os.environ["API_URL"], timeout=10) as client:
        yield client


@pytest.fixture
def token(api: httpx.Client) -> str:
    """An access token of the seeded superuser, through the real login."""
    response = api.post(
        "/login/access-token",
        data={
            "username": os.environ["FIRST_SUPERUSER"],
            "password": os.environ["FIRST_SUPERUSER_PASSWORD"],
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
