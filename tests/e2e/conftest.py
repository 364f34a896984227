"""The E2E suite runs against the whole stack: conductor's pytest plugin starts it for
`pytest tests/e2e` (tests/conftest.py asks for it), attaches to a live `invoke up`, or
finds the one `nox -s e2e` / `invoke e2e` already started around pytest. Every address
comes from the `conductor_stack` fixture; a service the run does not have fails the
test that needs it, naming it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from conductor import ConductorStack


@pytest.fixture(scope="session")
def backend_url(conductor_stack: ConductorStack) -> str:
    return conductor_stack.url("backend").rstrip("/")


@pytest.fixture(scope="session")
def frontend_url(conductor_stack: ConductorStack) -> str:
    return conductor_stack.url("frontend").rstrip("/")


@pytest.fixture(scope="session")
def orchestrator_url(conductor_stack: ConductorStack) -> str:
    return conductor_stack.url("orchestrator").rstrip("/")


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        yield session


@pytest.fixture
def orchestrator(http: aiohttp.ClientSession, orchestrator_url: str) -> Orchestrator:
    return Orchestrator(http, orchestrator_url)


class Orchestrator:
    """The stand-in's control panel for one test: make it fail or be slow, count its
    answers, for this test's questions only (those containing `token`). With -n 2 the
    workers share one stand-in; switching its mode for everyone raced (a 'fail' test got
    201 while another test's teardown set 'ok')."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.token = f"[t-{uuid.uuid4().hex[:10]}]"

    def question(self, text: str) -> str:
        """A question of this test's: the stand-in's mode for it is this test's."""
        return f"{text} {self.token}"

    async def mode(self, mode: str, delay: float = 30.0) -> None:
        body = {"mode": mode, "delay": delay, "match": self.token}
        async with self.http.post(f"{self.url}/control", json=body) as r:
            assert r.status == 200, await r.text()

    async def asked(self) -> int:
        async with self.http.get(f"{self.url}/stats", params={"match": self.token}) as r:
            return int((await r.json())["asked"])


@pytest.fixture
def email() -> str:
    """A new address per test: the E2E database lives for the whole run."""
    return f"e2e-{uuid.uuid4().hex[:12]}@example.com"
