"""The E2E suite runs inside the stack conductor started: every address comes from the
environment it exports (BACKEND_URL, FRONTEND_URL, ORCHESTRATOR_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

NEEDS_STACK = (
    "needs the running stack: use nox -s e2e, invoke e2e, or conductor run -- pytest tests/e2e"
)


def address(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set; {NEEDS_STACK}")
    return value.rstrip("/")


@pytest.fixture(scope="session")
def backend_url() -> str:
    return address("BACKEND_URL")


@pytest.fixture(scope="session")
def frontend_url() -> str:
    return address("FRONTEND_URL")


@pytest.fixture(scope="session")
def orchestrator_url() -> str:
    return address("ORCHESTRATOR_URL")


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        yield session


@pytest.fixture
async def orchestrator(
    http: aiohttp.ClientSession, orchestrator_url: str
) -> AsyncIterator[Orchestrator]:
    control = Orchestrator(http, orchestrator_url)
    await control.mode("ok")
    yield control
    await control.mode("ok")


class Orchestrator:
    """The stand-in's control panel: make it fail or be slow, read how often it was asked."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def mode(self, mode: str, delay: float = 30.0) -> None:
        async with self.http.post(f"{self.url}/control", json={"mode": mode, "delay": delay}) as r:
            assert r.status == 200, await r.text()

    async def asked(self) -> int:
        async with self.http.get(f"{self.url}/stats") as r:
            return int((await r.json())["asked"])


@pytest.fixture
def email() -> str:
    """A new address per test: the E2E database lives for the whole run."""
    return f"e2e-{uuid.uuid4().hex[:12]}@example.com"
