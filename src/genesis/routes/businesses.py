"""`/api/businesses`: CRUD where every business is visible only to its owner.

Someone else's business answers 404, not 403, so ids do not reveal what exists.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from genesis.deps import CurrentUser, SessionDep
from genesis.models import Business
from genesis.schemas import BusinessIn, BusinessOut, BusinessUpdate

router = APIRouter(prefix="/api/businesses", tags=["businesses"])

NOT_FOUND = "Business not found"
TAKEN = "You already have a business with this name"


async def owned_business(session: SessionDep, user: CurrentUser, business_id: int) -> Business:
    business = await session.scalar(
        select(Business).where(Business.id == business_id, Business.owner_id == user.id)
    )
    if business is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    return business


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BusinessOut)
async def create_business(body: BusinessIn, session: SessionDep, user: CurrentUser) -> Business:
    business = Business(owner_id=user.id, **body.model_dump())
    session.add(business)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=TAKEN) from None
    return business


@router.get("", response_model=list[BusinessOut])
async def list_businesses(session: SessionDep, user: CurrentUser) -> list[Business]:
    rows = await session.scalars(
        select(Business).where(Business.owner_id == user.id).order_by(Business.id)
    )
    return list(rows)


@router.get("/{business_id}", response_model=BusinessOut)
async def read_business(business_id: int, session: SessionDep, user: CurrentUser) -> Business:
    return await owned_business(session, user, business_id)


@router.patch("/{business_id}", response_model=BusinessOut)
async def update_business(
    business_id: int, body: BusinessUpdate, session: SessionDep, user: CurrentUser
) -> Business:
    business = await owned_business(session, user, business_id)
    for key, value in body.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(business, key, value)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=TAKEN) from None
    await session.refresh(business)
    return business


@router.delete("/{business_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_business(business_id: int, session: SessionDep, user: CurrentUser) -> Response:
    business = await owned_business(session, user, business_id)
    await session.delete(business)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
