#!/usr/bin/env python3
"""Per-test cost of the rollback isolation (tests/conftest.py) against recreating the
schema for every test, on PostgreSQL.

    python benchmarks/bench_db_isolation.py [--tests 200]

Uses TEST_DATABASE_URL when set, else starts the throwaway cluster through conductor.
Each "test" does the same small piece of work (insert a user, commit, read it back);
what differs is how the test gets a clean database. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genesis.db import make_engine  # noqa: E402
from genesis.migrate import upgrade_connection  # noqa: E402
from genesis.models import Base, User  # noqa: E402

TARGET_RATIO = 10.0
TARGET_OVERHEAD_MS = 5.0


async def work(session: AsyncSession) -> None:
    """The body of a typical database test."""
    session.add(User(email="bench@example.com", password_hash="x"))
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def fixture_alone(engine: AsyncEngine) -> None:
    """Only what the fixture adds to a test: a pooled connection, BEGIN (forced by one
    SELECT 1, since drivers begin lazily), the savepoint session, ROLLBACK."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            await session.execute(text("SELECT 1"))
        finally:
            await session.close()
            await transaction.rollback()


async def rollback_isolation(engine: AsyncEngine) -> None:
    """What tests/conftest.py does: connection, outer transaction, savepoint session."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            await work(session)
        finally:
            await session.close()
            await transaction.rollback()


async def _drop_all(connection: AsyncConnection) -> None:
    await connection.run_sync(Base.metadata.drop_all)
    await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def recreate_with_create_all(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await _drop_all(connection)
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await work(session)


async def recreate_with_migrations(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await _drop_all(connection)
        await upgrade_connection(connection)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await work(session)


async def measure(
    engine: AsyncEngine, case: Callable[[AsyncEngine], Awaitable[None]], n: int
) -> list[float]:
    await case(engine)  # warm the pool and the statement caches
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await case(engine)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def main(tests: int) -> None:
    async with AsyncExitStack() as stack:
        url = os.environ.get("TEST_DATABASE_URL")
        where = "TEST_DATABASE_URL"
        if not url:
            from conductor import Reporter, Stack, load_config

            logs = Path(tempfile.mkdtemp(prefix="bench-db-"))
            services = await stack.enter_async_context(
                Stack(
                    load_config(ROOT / "pyproject.toml"),
                    ["db"],
                    logs_dir=logs,
                    auto_ports=True,
                    reporter=Reporter(quiet=True),
                )
            )
            url = services.env["DB_URL"]
            where = "throwaway cluster (fsync off)"
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        async with engine.begin() as connection:
            await _drop_all(connection)
            await upgrade_connection(connection)

        overhead = statistics.median(await measure(engine, fixture_alone, tests))
        rows = []
        few = max(tests // 10, 5)  # recreating is slow; fewer samples give a stable median
        for name, case, n in (
            ("rollback isolation (conftest.py)", rollback_isolation, tests),
            ("recreate schema: metadata.create_all", recreate_with_create_all, few),
            ("recreate schema: alembic upgrade head", recreate_with_migrations, few),
        ):
            rows.append((name, statistics.median(await measure(engine, case, n)), n))
        async with engine.connect() as connection:
            version = await connection.scalar(text("SHOW server_version"))

    rollback = rows[0][1]
    print(f"PostgreSQL {version}, {where}; the same test body in every row (median ms).\n")
    print("| per-test isolation | median per test | tests | vs rollback |")
    print("|---|---:|---:|---:|")
    for name, ms, n in rows:
        print(f"| {name} | {ms:.2f} ms | {n} | {ms / rollback:.1f}x |")
    print()
    print("| target | measured | met |")
    print("|---|---:|---|")
    # The suites build their schema with the migrations, so recreating it per test
    # means running them again; create_all (which skips them) is shown for reference.
    for label, ms in (("alembic upgrade head", rows[2][1]), ("metadata.create_all", rows[1][1])):
        ratio = ms / rollback
        print(
            f"| rollback >= {TARGET_RATIO:g}x faster than recreating ({label}) | {ratio:.1f}x "
            f"| {'yes' if ratio >= TARGET_RATIO else 'NO'} |"
        )
    print(
        f"| fixture overhead <= {TARGET_OVERHEAD_MS:g} ms per test "
        f"(connection, BEGIN, session, ROLLBACK; no test body) | {overhead:.2f} ms "
        f"| {'yes' if overhead <= TARGET_OVERHEAD_MS else 'NO'} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tests", type=int, default=200, help="tests per case (default 200)")
    asyncio.run(main(parser.parse_args().tests))
