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

from conductor.pytest_stack import ConductorStack


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that switch the one orchestrator's mode (or count its answers) share an
    xdist group, so with -n 2 they run one at a time on one worker (--dist loadgroup,
    in the ini's addopts) while the rest spread."""
    for item in items:
        if "orchestrator" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("orchestrator"))
