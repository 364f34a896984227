"""Stage 3 doubles: a fake coach and a cache, injected through dependency overrides."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from genesis.cache import AnswerCache, MemoryCache, get_cache
from genesis.orchestrator import Coach, OrchestratorError, get_orchestrator


class FakeCoach:
    """Answers from a script, records every question, and fails on demand."""

    def __init__(self) -> None:
        self.asked: list[tuple[dict[str, str], str]] = []
        self.error: str | None = None

    async def ask(self, business: dict[str, str], question: str) -> str:
        self.asked.append((business, question))
        if self.error is not None:
            raise OrchestratorError(self.error)
        return f"answer {len(self.asked)} for {business['name']}: {question}"


@pytest.fixture
def coach() -> FakeCoach:
    return FakeCoach()


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache(ttl=60)


@pytest.fixture
def app(app: FastAPI, coach: FakeCoach, cache: MemoryCache) -> FastAPI:
    async def the_coach() -> Coach:
        return coach

    async def the_cache() -> AnswerCache:
        return cache

    app.dependency_overrides[get_orchestrator] = the_coach
    app.dependency_overrides[get_cache] = the_cache
    return app
