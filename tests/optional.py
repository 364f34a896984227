"""The optional programs the suites use, and the one way a test that needs one skips.

A new user's machine often lacks Chromium, redis-server or PostgreSQL's server binaries,
and the README promises that the suites still pass there: the database suites on SQLite,
the backend caching in process, the rest skipped. So a missing program is a path the
project tests (`nox -s bare` hides them for real), and each skip names the program and
how to install it, in one wording that the check reads back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conductor import find_bindir
from tools.bare import MISSING  # every such skip starts with it; nox -s bare reads it


@dataclass(frozen=True)
class Program:
    """One optional program: what it is called, how to get it, and where it is."""

    name: str
    install: str
    locate: Callable[[], str | None]

    @property
    def path(self) -> str | None:
        return self.locate()

    @property
    def reason(self) -> str:
        return f"{MISSING}{self.name} ({self.install})"

    def skip_unless_present(self) -> None:
        """Skip the calling test or fixture when the program is missing."""
        if self.path is None:
            pytest.skip(self.reason)

    @property
    def needed(self) -> pytest.MarkDecorator:
        """A mark for tests that cannot run without the program."""
        return pytest.mark.skipif(self.path is None, reason=self.reason)


def _chromium() -> str | None:
    """The first of $CHROMIUM, Debian's and PATH's chromium that this user can run."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _postgres() -> str | None:
    bindir = find_bindir()
    return None if bindir is None else str(bindir)


CHROMIUM = Program(
    "Chromium", "Debian: apt-get install chromium, or set CHROMIUM to its path", _chromium
)
REDIS = Program(
    "redis-server", "Debian: apt-get install redis-server", lambda: shutil.which("redis-server")
)
POSTGRES = Program(
    "PostgreSQL's server binaries (initdb, postgres)",
    "Debian: apt-get install postgresql",
    _postgres,
)
PROGRAMS = (CHROMIUM, REDIS, POSTGRES)

# pytest-playwright-asyncio's fixtures that launch a browser or hand out the means to
# (`playwright.chromium`, `browser_type.launch()`): without Chromium they would fall
# through to Playwright's own browser build, which is never downloaded here.
# tests/unit/test_optional.py holds this to the plugin's own fixtures.
BROWSER_FIXTURES = frozenset(
    {"page", "context", "new_context", "browser", "launch_browser", "browser_type", "playwright"}
)


def needs_browser(item: pytest.Item) -> bool:
    return bool(BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())))
