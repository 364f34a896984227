"""A run killed with SIGKILL leaves its databases on a shared server; the next run
drops them, and never those of a run that is still alive."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from conductor import quote_ident
from genesis.db import make_engine
from tests.database import (
    Provision,
    _admin,
    _with_database,
    drop_abandoned,
    run_session,
)


async def _databases(server_url: str) -> set[str]:
    engine = make_engine(server_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT datname FROM pg_database"))
            return set(rows.scalars())
    finally:
        await engine.dispose()


async def test_only_databases_of_dead_runs_are_dropped(provision: Provision) -> None:
    if provision.backend != "postgresql":
        pytest.skip("a SQLite run keeps its databases in a temporary folder of its own")
    url = provision.server_url
    dead, live = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    bystander = f"genesis_{dead}_notes"  # not a name a run creates
    names = [f"genesis_tpl_{dead}", f"genesis_{dead}_gw0", f"genesis_{dead}_master"]
    kept = [f"genesis_tpl_{live}", f"genesis_{live}_gw1"]
    await _admin(url, *(f"CREATE DATABASE {quote_ident(n)}" for n in [*names, *kept, bystander]))
    try:
        # A run that is still alive, connected to another database of the server.
        async with run_session(_with_database(url, bystander), live):
            dropped = await drop_abandoned(url, provision.run_id)
        assert sorted(dropped) == sorted(names)
        left = await _databases(url)
        assert not left & set(names)
        assert set(kept) <= left
        assert bystander in left
        assert provision.template in left  # our own run's

        # Once the live run has ended without cleaning up, its databases go as well.
        assert sorted(await drop_abandoned(url, provision.run_id)) == sorted(kept)
    finally:
        await _admin(
            url,
            *(f"DROP DATABASE IF EXISTS {quote_ident(n)} WITH (FORCE)" for n in [*names, *kept]),
            f"DROP DATABASE IF EXISTS {quote_ident(bystander)} WITH (FORCE)",
        )
