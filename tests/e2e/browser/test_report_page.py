"""conductor's report.html, opened in the real Chromium: a run with a service that fails
shows a lane per service, COMMAND and teardown, and a failure mark on the failed one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser.conftest import artifacts

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.e2e

CONFIG = """
logs_dir = "logs"

[services.ok]
command = ["{python}", "-c", "import time; print('ok ready', flush=True); time.sleep(60)"]
ready = { log = "ok ready" }

[services.bad]
command = ["{python}", "-c", "print('<b>boom</b>', flush=True); raise SystemExit(3)"]
ready = { log = "never printed" }
depends_on = ["ok"]
"""


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    """A real conductor run whose second service crashes; its logs folder."""
    (tmp_path / "conductor.toml").write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "conductor", "run", "--config", "conductor.toml", "--", "true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 125, done.stderr
    return tmp_path / "logs"


async def test_report_shows_lanes_and_the_failure_mark(page: Page, failed_run: Path) -> None:
    await page.goto((failed_run / "report.html").as_uri())
    assert await page.title() == "conductor run: exit 125"
    lanes = page.locator("svg.timeline g.lane")
    assert await lanes.count() == 4  # ok, bad, COMMAND, teardown
    bad = page.locator('svg.timeline g.lane[data-service="bad"]')
    assert "failed" in (await bad.get_attribute("class") or "")
    assert await bad.locator("g.failure-mark").count() == 1
    assert await page.locator("g.failure-mark").count() == 1
    # The failed service's log tail is open and escaped: text, not markup.
    tail = page.locator('details.tail[data-service="bad"] pre')
    assert await tail.is_visible()
    assert "<b>boom</b>" in await tail.inner_text()
    # The log link resolves to the file beside the report.
    href = await page.locator("table a", has_text="bad.log").get_attribute("href")
    assert href == "bad.log"
    assert (failed_run / href).is_file()
    shot = artifacts() / "report-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(shot), full_page=True)
