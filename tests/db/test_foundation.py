"""Stage 1: the loop, the engine and the per-test transaction behave as promised."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from genesis.db import make_engine
from genesis.models import Base, User

SESSION_LOOP: list[asyncio.AbstractEventLoop] = []


async def test_every_test_runs_on_the_one_session_loop(engine: AsyncEngine) -> None:
    SESSION_LOOP.append(asyncio.get_running_loop())
    assert len(set(SESSION_LOOP)) == 1


async def test_engine_is_used_on_the_loop_that_made_it(engine: AsyncEngine) -> None:
    SESSION_LOOP.append(asyncio.get_running_loop())
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT 1")) == 1
    assert len(set(SESSION_LOOP)) == 1


async def test_schema_comes_from_the_migrations_and_matches_the_models(
    connection: AsyncConnection,
) -> None:
    def diff(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, Base.metadata))

    assert await connection.run_sync(diff) == []
    version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert version == "0001"


@pytest.mark.parametrize("attempt", [1, 2, 3])
async def test_each_test_starts_with_empty_tables(db_session: AsyncSession, attempt: int) -> None:
    # Whichever of these runs first commits a row; the others must not see it.
    assert await db_session.scalar(select(func.count()).select_from(User)) == 0
    db_session.add(User(email=f"isolated{attempt}@example.com", password_hash="x"))
    await db_session.commit()
    assert await db_session.scalar(select(func.count()).select_from(User)) == 1


async def test_application_rollback_stays_inside_the_test_transaction(
    db_session: AsyncSession,
) -> None:
    db_session.add(User(email="kept@example.com", password_hash="x"))
    await db_session.commit()
    db_session.add(User(email="dropped@example.com", password_hash="x"))
    await db_session.flush()
    await db_session.rollback()  # undoes only the savepoint since the last commit
    emails = set(await db_session.scalars(select(User.email)))
    assert emails == {"kept@example.com"}


async def test_committed_rows_are_invisible_to_other_connections(
    db_session: AsyncSession, engine: AsyncEngine
) -> None:
    db_session.add(User(email="private@example.com", password_hash="x"))
    await db_session.commit()
    async with engine.connect() as other:
        assert await other.scalar(select(func.count()).select_from(User)) == 0


async def test_two_concurrent_requests_share_the_test_connection_safely(
    client: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(*(client.get("/health") for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8


async def test_health_is_503_when_the_database_is_unreachable(
    client: httpx.AsyncClient, app
) -> None:  # type: ignore[no-untyped-def]
    from genesis.db import get_session

    dead = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")

    async def unreachable() -> object:
        async with AsyncSession(dead) as session:
            yield session

    app.dependency_overrides[get_session] = unreachable
    try:
        response = await client.get("/health")
    finally:
        await dead.dispose()
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
