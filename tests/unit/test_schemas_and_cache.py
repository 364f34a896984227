"""Request validation and the in-process answer cache."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from genesis.cache import MemoryCache, answer_key, make_cache
from genesis.schemas import BusinessIn, BusinessUpdate, CoachingQuestion, UserCreate


@pytest.mark.parametrize("email", ["plain", "a@", "@example.com", "a b@example.com"])
def test_bad_emails(email: str) -> None:
    with pytest.raises(ValidationError):
        UserCreate(email=email, password="long enough")


def test_password_needs_eight_characters() -> None:
    with pytest.raises(ValidationError):
        UserCreate(email="a@example.com", password="7 chars")
    assert UserCreate(email="a@example.com", password="8 chars!").password == "8 chars!"


def test_business_fields_are_stripped_and_bounded() -> None:
    assert BusinessIn(name="  Bakery ").name == "Bakery"
    with pytest.raises(ValidationError):
        BusinessIn(name="   ")
    assert BusinessUpdate().model_dump(exclude_unset=True) == {}


def test_questions_need_substance() -> None:
    with pytest.raises(ValidationError):
        CoachingQuestion(business_id=1, question=" ? ")


def test_answer_key_ignores_case_and_spacing_but_not_the_business() -> None:
    assert answer_key(1, "How  do I grow?") == answer_key(1, " how do i GROW? ")
    assert answer_key(1, "How do I grow?") != answer_key(2, "How do I grow?")
    assert answer_key(1, "How do I grow?") != answer_key(1, "How do I shrink?")


async def test_memory_cache_expires_entries() -> None:
    now = [0.0]
    cache = MemoryCache(ttl=10, clock=lambda: now[0])
    await cache.set("k", "v")
    now[0] = 9.9
    assert await cache.get("k") == "v"
    now[0] = 10.0
    assert await cache.get("k") is None


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(ttl=60, max_entries=2)
    await cache.set("a", "1")
    await cache.set("b", "2")
    assert await cache.get("a") == "1"  # a is now the most recent
    await cache.set("c", "3")
    assert await cache.get("b") is None
    assert await cache.get("a") == "1"
    assert await cache.get("c") == "3"


def test_redis_is_used_only_when_configured() -> None:
    assert isinstance(make_cache(None, 60), MemoryCache)
