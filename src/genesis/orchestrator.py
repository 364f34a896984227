"""The client for the external coaching orchestrator.

Routes receive it through a FastAPI dependency, so tests swap in a fake with
`app.dependency_overrides[get_orchestrator]` instead of patching this module.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from fastapi import Request


class OrchestratorError(Exception):
    """The orchestrator could not give an answer; the message says why, for the user."""


class Coach(Protocol):
    async def ask(self, business: dict[str, str], question: str) -> str: ...


class OrchestratorClient:
    """`POST {base_url}/v1/answers` with a hard time limit on the whole exchange."""

    def __init__(self, base_url: str, timeout: float, client: httpx.AsyncClient | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = client or httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def ask(self, business: dict[str, str], question: str) -> str:
        try:
            response = await self._client.post(
                f"{self.base_url}/v1/answers",
                json={"business": business, "question": question},
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise OrchestratorError(
                f"the coaching orchestrator did not answer within {self.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise OrchestratorError(
                f"the coaching orchestrator is unreachable ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise OrchestratorError(
                f"the coaching orchestrator failed with HTTP {response.status_code}"
            )
        try:
            answer = response.json()["answer"]
        except (ValueError, KeyError, TypeError):
            raise OrchestratorError("the coaching orchestrator sent a malformed answer") from None
        if not isinstance(answer, str) or not answer.strip():
            raise OrchestratorError("the coaching orchestrator sent an empty answer")
        return answer

    async def aclose(self) -> None:
        await self._client.aclose()


def get_orchestrator(request: Request) -> Coach:
    coach: Coach = request.app.state.orchestrator
    return coach
