"""Coaching sessions: questions answered through the (fake) orchestrator and cached."""

from __future__ import annotations

import httpx
import pytest

from genesis.cache import MemoryCache
from tests.coaching.conftest import FakeCoach
from tests.conftest import User

QUESTION = "How do I find my first ten customers?"


@pytest.fixture
async def shop(client: httpx.AsyncClient, alice: User) -> dict[str, object]:
    response = await client.post(
        "/api/businesses",
        json={"name": "Alice's Bakery", "industry": "food", "description": "sourdough"},
        headers=alice.headers,
    )
    assert response.status_code == 201
    return response.json()


async def ask(
    client: httpx.AsyncClient, user: User, business_id: object, question: str = QUESTION
) -> httpx.Response:
    return await client.post(
        "/api/coaching/sessions",
        json={"business_id": business_id, "question": question},
        headers=user.headers,
    )


async def test_question_is_answered_by_the_coach_and_recorded(
    client: httpx.AsyncClient, alice: User, shop: dict[str, object], coach: FakeCoach
) -> None:
    response = await ask(client, alice, shop["id"])
    assert response.status_code == 201
    body = response.json()
    assert body["answer"] == f"answer 1 for Alice's Bakery: {QUESTION}"
    assert body["cached"] is False
    assert coach.asked == [
        ({"name": "Alice's Bakery", "industry": "food", "description": "sourdough"}, QUESTION)
    ]
    listed = await client.get("/api/coaching/sessions", headers=alice.headers)
    assert [s["id"] for s in listed.json()] == [body["id"]]


async def test_same_question_is_served_from_the_cache(
    client: httpx.AsyncClient, alice: User, shop: dict[str, object], coach: FakeCoach
) -> None:
    first = await ask(client, alice, shop["id"])
    second = await ask(client, alice, shop["id"], "  how do I find my FIRST ten customers?  ")
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["answer"] == first.json()["answer"]
    assert second.json()["cached"] is True
    assert len(coach.asked) == 1
    listed = await client.get("/api/coaching/sessions", headers=alice.headers)
    assert [s["cached"] for s in listed.json()] == [False, True]


async def test_a_different_question_or_business_is_a_cache_miss(
    client: httpx.AsyncClient, alice: User, shop: dict[str, object], coach: FakeCoach
) -> None:
    other = await client.post(
        "/api/businesses", json={"name": "Second shop"}, headers=alice.headers
    )
    await ask(client, alice, shop["id"])
    await ask(client, alice, shop["id"], "What should I charge?")
    await ask(client, alice, other.json()["id"])
    assert len(coach.asked) == 3


async def test_expired_cache_entry_asks_again(
    client: httpx.AsyncClient,
    alice: User,
    shop: dict[str, object],
    coach: FakeCoach,
    cache: MemoryCache,
) -> None:
    now = [1000.0]
    cache._clock = lambda: now[0]
    await ask(client, alice, shop["id"])
    now[0] += cache.ttl + 1
    again = await ask(client, alice, shop["id"])
    assert again.json()["cached"] is False
    assert len(coach.asked) == 2


@pytest.mark.parametrize(
    "error",
    [
        "the coaching orchestrator failed with HTTP 503",
        "the coaching orchestrator did not answer within 10s",
    ],
)
async def test_orchestrator_failure_is_502_and_nothing_is_written(
    client: httpx.AsyncClient,
    alice: User,
    shop: dict[str, object],
    coach: FakeCoach,
    cache: MemoryCache,
    error: str,
) -> None:
    coach.error = error
    response = await ask(client, alice, shop["id"])
    assert response.status_code == 502
    assert response.json()["detail"] == f"No answer from the coach: {error}"
    listed = await client.get("/api/coaching/sessions", headers=alice.headers)
    assert listed.json() == []
    assert cache._data == {}
    # The coach recovers: the next question is asked, not served from a poisoned cache.
    coach.error = None
    assert (await ask(client, alice, shop["id"])).json()["cached"] is False


async def test_cannot_ask_about_someone_elses_business(
    client: httpx.AsyncClient, bob: User, shop: dict[str, object], coach: FakeCoach
) -> None:
    response = await ask(client, bob, shop["id"])
    assert response.status_code == 404
    assert coach.asked == []


async def test_sessions_are_listed_only_for_their_owner(
    client: httpx.AsyncClient, alice: User, bob: User, shop: dict[str, object]
) -> None:
    await ask(client, alice, shop["id"])
    assert (await client.get("/api/coaching/sessions", headers=bob.headers)).json() == []
    mine = await client.get(
        f"/api/coaching/sessions?business_id={shop['id']}", headers=alice.headers
    )
    assert len(mine.json()) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"question": QUESTION},
        {"business_id": 1, "question": "  "},
        {"business_id": "x", "question": QUESTION},
    ],
)
async def test_invalid_questions_are_422(
    client: httpx.AsyncClient, alice: User, payload: dict[str, object]
) -> None:
    response = await client.post("/api/coaching/sessions", json=payload, headers=alice.headers)
    assert response.status_code == 422


async def test_coaching_needs_a_login(client: httpx.AsyncClient, shop: dict[str, object]) -> None:
    response = await client.post(
        "/api/coaching/sessions", json={"business_id": shop["id"], "question": QUESTION}
    )
    assert response.status_code == 401
    assert (await client.get("/api/coaching/sessions")).status_code == 401
