"""The real orchestrator client and the Redis cache, against real servers: the
orchestrator stand-in and redis-server, both started by conductor for this module."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from genesis.cache import RedisCache, answer_key
from genesis.orchestrator import OrchestratorClient, OrchestratorError
from tests.optional import REDIS
from tests.services import running

BUSINESS = {"name": "Alice's Bakery", "industry": "food", "description": ""}


@pytest.fixture(scope="module")
async def orchestrator_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    # Always our own: these tests switch its mode, which must not reach another worker.
    async with running(["orchestrator"], tmp_path_factory.mktemp("orchestrator")) as stack:
        yield stack.env["ORCHESTRATOR_URL"]


@pytest.fixture(scope="module")
async def redis_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    given = os.environ.get("REDIS_URL") or os.environ.get("CACHE_URL")
    if given:
        yield given
        return
    REDIS.skip_unless_present()
    async with running(["cache"], tmp_path_factory.mktemp("redis")) as stack:
        yield stack.env["CACHE_URL"]


@pytest.fixture
async def standin(orchestrator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=orchestrator_url, trust_env=False) as control:
        await control.post("/control", json={"mode": "ok", "reset": True})
        yield control
        await control.post("/control", json={"mode": "ok"})


async def test_answer_from_the_orchestrator(
    orchestrator_url: str, standin: httpx.AsyncClient
) -> None:
    client = OrchestratorClient(orchestrator_url, timeout=5)
    try:
        answer = await client.ask(BUSINESS, "How do I grow?")
        again = await client.ask(BUSINESS, "How do I grow?")
    finally:
        await client.aclose()
    assert answer.startswith("For Alice's Bakery: ")
    assert again == answer
    assert (await standin.get("/stats")).json()["asked"] == 2


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("fail", "failed with HTTP 503"),
        ("garbage", "sent a malformed answer"),
    ],
)
async def test_orchestrator_errors_become_one_clear_error(
    orchestrator_url: str, standin: httpx.AsyncClient, mode: str, message: str
) -> None:
    await standin.post("/control", json={"mode": mode})
    client = OrchestratorClient(orchestrator_url, timeout=5)
    try:
        with pytest.raises(OrchestratorError, match=message):
            await client.ask(BUSINESS, "How do I grow?")
    finally:
        await client.aclose()


async def test_slow_orchestrator_times_out_on_time(
    orchestrator_url: str, standin: httpx.AsyncClient
) -> None:
    await standin.post("/control", json={"mode": "slow", "delay": 30})
    client = OrchestratorClient(orchestrator_url, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(OrchestratorError, match=r"did not answer within 0.3s"):
            await client.ask(BUSINESS, "How do I grow?")
    finally:
        await client.aclose()
    assert time.monotonic() - started < 5


async def test_unreachable_orchestrator() -> None:
    client = OrchestratorClient("http://127.0.0.1:9", timeout=5)
    try:
        with pytest.raises(OrchestratorError, match="unreachable"):
            await client.ask(BUSINESS, "How do I grow?")
    finally:
        await client.aclose()


async def test_redis_cache_round_trip_and_expiry(redis_url: str) -> None:
    cache = RedisCache(redis_url, ttl=0.2)
    key = answer_key(1, f"question {uuid.uuid4()}")
    try:
        assert await cache.get(key) is None
        await cache.set(key, "an answer")
        assert await cache.get(key) == "an answer"
        deadline = time.monotonic() + 5
        while await cache.get(key) is not None:  # Redis expires it on its own clock
            assert time.monotonic() < deadline, "the key never expired"
            await asyncio.sleep(0.05)
    finally:
        await cache.aclose()
