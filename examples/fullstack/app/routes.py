"""The API: log in, who am I, and items (each user's own; a superuser sees all)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Item, User
from app.security import create_token, user_id_from_token, verify_password
from app.settings import Settings

router = APIRouter()
oauth2 = OAuth2PasswordBearer(tokenUrl="login/access-token")


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class UserOut(BaseModel):
    id: int
    email: str
    is_superuser: bool


class ItemIn(BaseModel):
    title: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=1000)


class ItemOut(ItemIn):
    id: int
    owner_id: int


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def current_user(
    session: SessionDep, settings: SettingsDep, token: Annotated[str, Depends(oauth2)]
) -> User:
    user_id = user_id_from_token(settings, token)
    user = None if user_id is None else await session.get(User, user_id)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Could not validate credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


@router.post("/login/access-token")
async def login(
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    user = await session.scalar(
        select(User).where(func.lower(User.email) == form.username.strip().lower())
    )
    if user is None or not verify_password(form.password, user.hashed_password):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Incorrect email or password")
    return Token(access_token=create_token(settings, user.id))


@router.get("/users/me")
async def read_me(user: CurrentUser) -> UserOut:
    return UserOut(id=user.id, email=user.email, is_superuser=user.is_superuser)


@router.get("/items")
async def list_items(session: SessionDep, user: CurrentUser) -> list[ItemOut]:
    query = select(Item).order_by(Item.id)
    if not user.is_superuser:
        query = query.where(Item.owner_id == user.id)
    items = await session.scalars(query)
    return [_item_out(item) for item in items]


@router.post("/items", status_code=status.HTTP_201_CREATED)
async def create_item(session: SessionDep, user: CurrentUser, item_in: ItemIn) -> ItemOut:
    item = Item(title=item_in.title, description=item_in.description, owner_id=user.id)
    session.add(item)
    await session.commit()
    return _item_out(item)


def _item_out(item: Item) -> ItemOut:
    return ItemOut(
        id=item.id, title=item.title, description=item.description, owner_id=item.owner_id
    )
