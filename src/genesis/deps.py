"""Dependencies shared by the routes: settings, the session, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from genesis.db import get_session
from genesis.models import User
from genesis.security import InvalidToken, decode_token
from genesis.settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/login", auto_error=False)

NOT_AUTHENTICATED = "Not authenticated: log in and send the token as 'Authorization: Bearer ...'"


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _unauthorized(detail: str = NOT_AUTHENTICATED) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise _unauthorized()
    try:
        subject = decode_token(token, settings.secret)
    except InvalidToken:
        raise _unauthorized("Invalid or expired token: log in again") from None
    user = await session.get(User, int(subject)) if subject.isdigit() else None
    if user is None:
        raise _unauthorized("Invalid or expired token: log in again")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
