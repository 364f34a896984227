"""`/api/coaching/sessions`: questions about your business, answered by the orchestrator.

The orchestrator is asked before anything is written, so a failure leaves no
half-written session behind; answers are cached per business and question.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select

from genesis.cache import AnswerCache, answer_key, get_cache
from genesis.deps import CurrentUser, SessionDep
from genesis.models import Business, CoachingSession
from genesis.orchestrator import Coach, OrchestratorError, get_orchestrator
from genesis.schemas import CoachingOut, CoachingQuestion

router = APIRouter(prefix="/api/coaching/sessions", tags=["coaching"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CoachingOut)
async def ask(
    body: CoachingQuestion,
    session: SessionDep,
    user: CurrentUser,
    coach: Annotated[Coach, Depends(get_orchestrator)],
    cache: Annotated[AnswerCache, Depends(get_cache)],
) -> CoachingSession:
    business = await session.scalar(
        select(Business).where(Business.id == body.business_id, Business.owner_id == user.id)
    )
    if business is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Business not found")
    key = answer_key(business.id, body.question)
    answer = await cache.get(key)
    cached = answer is not None
    if answer is None:
        context = {
            "name": business.name,
            "industry": business.industry,
            "description": business.description,
        }
        try:
            answer = await coach.ask(context, body.question)
        except OrchestratorError as exc:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, detail=f"No answer from the coach: {exc}"
            ) from None
        await cache.set(key, answer)
    record = CoachingSession(
        user_id=user.id,
        business_id=business.id,
        question=body.question,
        answer=answer,
        cached=cached,
    )
    session.add(record)
    await session.commit()
    return record


@router.get("", response_model=list[CoachingOut])
async def list_sessions(
    session: SessionDep, user: CurrentUser, business_id: int | None = None
) -> list[CoachingSession]:
    query = select(CoachingSession).where(CoachingSession.user_id == user.id)
    if business_id is not None:
        query = query.where(CoachingSession.business_id == business_id)
    return list(await session.scalars(query.order_by(CoachingSession.id)))
