"""Real helper services for a test module, started and always stopped by conductor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conductor import Reporter, Stack, load_config

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def running(services: list[str], logs_dir: Path) -> AsyncIterator[Stack]:
    """The named services of pyproject's [tool.conductor] on free ports; their logs
    in `logs_dir` (a test's tmp folder, so parallel workers never share one)."""
    stack = Stack(
        load_config(ROOT / "pyproject.toml"),
        services,
        logs_dir=logs_dir,
        auto_ports=True,
        reporter=Reporter(quiet=True),
    )
    async with stack:
        yield stack
