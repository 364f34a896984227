"""API journeys against the live backend (Uvicorn, PostgreSQL, cache, orchestrator)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Orchestrator

PASSWORD = "e2e correct horse"


class Client:
    """One person using the API: registers, logs in, then sends their token."""

    def __init__(self, http: aiohttp.ClientSession, base: str, email: str) -> None:
        self.http = http
        self.base = base
        self.email = email
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, headers=self.headers, **kwargs
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def sign_up(self) -> Client:
        status, _ = await self.call(
            "POST", "/api/auth/register", json={"email": self.email, "password": PASSWORD}
        )
        assert status == 201
        status, body = await self.call(
            "POST", "/api/auth/login", data={"username": self.email, "password": PASSWORD}
        )
        assert status == 200
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}
        return self


@pytest.fixture
async def alice(http: aiohttp.ClientSession, backend_url: str, email: str) -> Client:
    return await Client(http, backend_url, email).sign_up()


@pytest.fixture
async def bob(http: aiohttp.ClientSession, backend_url: str) -> Client:
    return await Client(http, backend_url, f"bob-{uuid.uuid4().hex[:8]}@example.com").sign_up()


async def test_health(http: aiohttp.ClientSession, backend_url: str) -> None:
    async with http.get(f"{backend_url}/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}


async def test_register_login_me(http: aiohttp.ClientSession, backend_url: str, email: str) -> None:
    client = Client(http, backend_url, email)
    status, body = await client.call(
        "POST", "/api/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert status == 201
    assert "password" not in str(body)
    assert (
        await client.call("POST", "/api/auth/register", json={"email": email, "password": PASSWORD})
    )[0] == 409
    bad = await client.call(
        "POST", "/api/auth/login", data={"username": email, "password": "nope-nope"}
    )
    assert bad == (401, {"detail": "Incorrect email or password"})
    status, body = await client.call(
        "POST", "/api/auth/login", data={"username": email, "password": PASSWORD}
    )
    assert status == 200
    client.headers = {"Authorization": f"Bearer {body['access_token']}"}
    status, me = await client.call("GET", "/api/auth/me")
    assert (status, me["email"]) == (200, email)
    client.headers = {"Authorization": "Bearer not-a-token"}
    assert (await client.call("GET", "/api/auth/me"))[0] == 401


async def test_businesses_across_two_users(alice: Client, bob: Client) -> None:
    status, shop = await alice.call(
        "POST", "/api/businesses", json={"name": "Bakery", "industry": "food"}
    )
    assert status == 201
    path = f"/api/businesses/{shop['id']}"
    assert (await alice.call("GET", "/api/businesses"))[1] == [shop]
    assert (await bob.call("GET", "/api/businesses"))[1] == []
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {"name": "mine now"}} if method == "PATCH" else {}
        assert (await bob.call(method, path, **kwargs))[0] == 404
    status, updated = await alice.call("PATCH", path, json={"industry": "bakery"})
    assert (status, updated["industry"]) == (200, "bakery")
    assert (await alice.call("DELETE", path))[0] == 204
    assert (await alice.call("GET", path))[0] == 404


async def test_coaching_answer_then_cache(alice: Client, orchestrator: Orchestrator) -> None:
    _, shop = await alice.call("POST", "/api/businesses", json={"name": "Bakery"})
    question = orchestrator.question("How do I sell more bread?")
    before = await orchestrator.asked()
    status, first = await alice.call(
        "POST", "/api/coaching/sessions", json={"business_id": shop["id"], "question": question}
    )
    assert status == 201
    assert first["answer"].startswith("For Bakery: ")
    assert first["cached"] is False
    status, second = await alice.call(
        "POST", "/api/coaching/sessions", json={"business_id": shop["id"], "question": question}
    )
    assert (status, second["cached"], second["answer"]) == (201, True, first["answer"])
    assert await orchestrator.asked() == before + 1
    _, sessions = await alice.call("GET", f"/api/coaching/sessions?business_id={shop['id']}")
    assert [s["cached"] for s in sessions] == [False, True]


@pytest.mark.parametrize(
    ("mode", "detail"),
    [("fail", "failed with HTTP 503"), ("slow", "did not answer within 2s")],
)
async def test_orchestrator_failure_and_timeout_give_502(
    alice: Client, orchestrator: Orchestrator, mode: str, detail: str
) -> None:
    _, shop = await alice.call("POST", "/api/businesses", json={"name": "Bakery"})
    await orchestrator.mode(mode, delay=30)
    started = asyncio.get_running_loop().time()
    status, body = await alice.call(
        "POST",
        "/api/coaching/sessions",
        json={"business_id": shop["id"], "question": orchestrator.question("Will this work?")},
    )
    assert status == 502
    assert detail in body["detail"]
    assert asyncio.get_running_loop().time() - started < 10
    assert (await alice.call("GET", "/api/coaching/sessions"))[1] == []
