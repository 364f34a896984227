"""Answer cache: the same question about the same business is asked only once.

Redis (redis-py's asyncio client) when REDIS_URL is set, so every worker of a
deployment shares it; an in-process TTL cache otherwise. Routes get it through a
dependency, so tests pass their own.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from fastapi import Request


class AnswerCache(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def aclose(self) -> None: ...


def answer_key(business_id: int, question: str) -> str:
    """Case and spacing do not make a question new."""
    normalized = " ".join(question.lower().split())
    digest = hashlib.sha256(normalized.encode()).hexdigest()[:32]
    return f"genesis:answer:{business_id}:{digest}"


class MemoryCache:
    """A bounded TTL cache for one process; the clock is injectable for tests."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: str) -> None:
        self._data[key] = (self._clock() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def aclose(self) -> None:
        self._data.clear()


class RedisCache:
    def __init__(self, url: str, ttl: float) -> None:
        from redis.asyncio import Redis

        self.ttl = ttl
        self._redis = Redis.from_url(url, decode_responses=True)

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(key)
        return value if isinstance(value, str) else None

    async def set(self, key: str, value: str) -> None:
        await self._redis.set(key, value, px=max(int(self.ttl * 1000), 1))

    async def aclose(self) -> None:
        await self._redis.aclose()


def make_cache(redis_url: str | None, ttl: float) -> AnswerCache:
    return RedisCache(redis_url, ttl) if redis_url else MemoryCache(ttl)


def get_cache(request: Request) -> AnswerCache:
    cache: AnswerCache = request.app.state.cache
    return cache
