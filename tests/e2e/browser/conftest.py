"""The browser tests run on pytest-playwright-asyncio's fixtures (`page`, `context`,
`browser`), launched on Debian's Chromium: Playwright's own browser download does not
work here, and nothing may fetch one.

On a failure the plugin keeps a trace (the Trace Viewer's timeline, DOM snapshots,
network and console) and a screenshot in the run's logs folder, `browser/`
(E2E_ARTIFACTS, which nox and invoke point at `_e2e_logs/e2e/browser`). The plugin's
own options still win when given (`--tracing on`, `--screenshot on`, `--output DIR`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.browser.processes import BrowserProcesses
from tests.optional import CHROMIUM

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[3]
# How long browser processes may take to exit once the browser is closed.
EXIT_DEADLINE = 10.0


def artifacts() -> Path:
    return Path(os.environ.get("E2E_ARTIFACTS") or ROOT / "_e2e_logs" / "browser")


def pytest_configure(config: pytest.Config) -> None:
    """Traces and screenshots of failed tests in the logs folder, unless the command
    line chose otherwise (the plugin's own defaults are no trace, no screenshot and
    ./test-results)."""
    if not hasattr(config.option, "tracing"):  # pytest-playwright-asyncio is not loaded
        return
    given = [
        *config.invocation_params.args,
        *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
        *config.getini("addopts"),
    ]
    defaults = {
        "tracing": "retain-on-failure",
        "screenshot": "only-on-failure",
        "output": str(artifacts()),
    }
    for name, value in defaults.items():
        flag = f"--{name}"
        if not any(a == flag or a.startswith(f"{flag}=") for a in given):
            setattr(config.option, name, value)


@pytest.fixture(scope="session")
async def browser_processes() -> AsyncIterator[BrowserProcesses]:
    """At the end of the session, after Playwright has stopped: proof that no
    browser process is still running (a zombie counts as gone)."""
    processes = BrowserProcesses()
    yield processes
    running = await processes.outliving(EXIT_DEADLINE)
    assert running == [], f"browser processes outlived the session: {running}"


@pytest.fixture(scope="session")
def playwright(browser_processes: BrowserProcesses, playwright: Playwright) -> Playwright:
    """The plugin's Playwright, started after `browser_processes` (so stopped before
    its check runs); its driver noted as a browser process."""
    browser_processes.note()
    return playwright


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], browser_processes: BrowserProcesses
) -> dict[str, Any]:
    """The plugin's launch options (--headed, --slowmo, ...) on the system Chromium."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM.path,
        "args": FLAGS,
        "env": browser_processes.environment(),
    }


@pytest.fixture(scope="session")
def browser(browser: Browser, browser_processes: BrowserProcesses) -> Browser:
    """The plugin's browser; its processes (and Playwright's driver) noted as launched."""
    browser_processes.note()
    return browser


@pytest.fixture(scope="session")
def base_url(frontend_url: str) -> str:
    """page.goto("/#/register") goes to the front end conductor started."""
    return frontend_url


@pytest.fixture
async def context(context: BrowserContext) -> BrowserContext:
    """Fail a stuck action after 15 s, not Playwright's 30 s."""
    context.set_default_timeout(15_000)
    return context
