"""`/api/auth`: register, log in (OAuth2 password form), who am I."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from genesis.deps import CurrentUser, SessionDep, SettingsDep
from genesis.models import User
from genesis.schemas import Token, UserCreate, UserOut
from genesis.security import create_token, passwords

router = APIRouter(prefix="/api/auth", tags=["auth"])

BAD_CREDENTIALS = "Incorrect email or password"


def _normalize(email: str) -> str:
    return email.strip().lower()


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: UserCreate, session: SessionDep, settings: SettingsDep) -> User:
    hashed = await passwords(settings.password_hash_profile).hash_async(body.password)
    user = User(email=_normalize(body.email), password_hash=hashed)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="This email is already registered: log in instead"
        ) from None
    return user


@router.post("/login", response_model=Token)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    user = await session.scalar(
        select(User).where(func.lower(User.email) == _normalize(form.username))
    )
    hasher = passwords(settings.password_hash_profile)
    ok = await hasher.verify_async(user.password_hash if user else None, form.password)
    if user is None or not ok:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=BAD_CREDENTIALS,
            headers={"WWW-Authenticate": "Bearer"},
        )
    lifetime = timedelta(minutes=settings.access_token_minutes)
    return Token(
        access_token=create_token(str(user.id), settings.secret, lifetime),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> User:
    return user
