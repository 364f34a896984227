"""In a real browser: Playwright driving Debian's Chromium through the front end.

Playwright's own browser download does not work here, so it launches the system
Chromium. On a failure, a screenshot and the page's console log go to the logs folder.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Orchestrator

CHROMIUM = next(
    (
        p
        for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
        if p and Path(p).exists()
    ),
    None,
)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("E2E_ARTIFACTS")
    or (Path(__file__).resolve().parents[2] / "_e2e_logs" / "browser")
)

try:
    from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
except ImportError:  # the e2e dependency group is not installed
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not HAVE_PLAYWRIGHT, reason="Playwright is not installed (dependency group e2e)"
    ),
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        # Our own descendants now: Playwright's driver, Chromium and its helpers.
        ours = psutil.Process().children(recursive=True)
        try:
            yield launched
        finally:
            await launched.close()
    _, alive = psutil.wait_procs(ours, timeout=10)
    # Helpers that double-forked are reaped by their adoptive parent (conductor, the
    # subreaper); until then they are zombies: already dead, holding nothing.
    running = [p.pid for p in alive if _status(p) not in (psutil.STATUS_ZOMBIE, "gone")]
    assert running == [], f"browser processes outlived the session: {running}"


def _status(proc: psutil.Process) -> str:
    try:
        return str(proc.status())
    except psutil.NoSuchProcess:
        return "gone"


@pytest.fixture
async def page(
    browser: Browser, request: pytest.FixtureRequest, frontend_url: str
) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=frontend_url)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    console: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        console.append(f"[{message.type}] {message.text}")

    page.on("console", remember)
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^\w.-]", "_", request.node.name)
            await page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
            (ARTIFACTS / f"{stem}.console.log").write_text("\n".join(console) + "\n")
        await context.close()


async def register(page: Page, email: str, password: str) -> None:
    await page.goto("/#/register")
    form = page.get_by_test_id("register-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Create account").click()


async def test_register_create_business_and_ask_the_coach(
    page: Page, orchestrator: Orchestrator
) -> None:
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    await register(page, email, "browser password")
    await expect(page.get_by_test_id("current-user")).to_have_text(f"Signed in as {email}")

    business = page.get_by_test_id("business-form")
    await business.get_by_label("Business name").fill("Corner Bakery")
    await business.get_by_label("Industry").fill("food")
    await business.get_by_role("button", name="Add business").click()
    await expect(page.get_by_test_id("businesses")).to_contain_text("Corner Bakery (food)")

    coach = page.get_by_test_id("coach-form")
    await coach.get_by_label("Question").fill(
        f"How do I get more customers? {uuid.uuid4().hex[:6]}"
    )
    await coach.get_by_role("button", name="Ask the coach").click()
    await expect(page.get_by_test_id("answer")).to_have_text(re.compile(r"^For Corner Bakery: .+"))


async def test_log_out_and_back_in(page: Page) -> None:
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    await register(page, email, "browser password")
    await expect(page.get_by_test_id("current-user")).to_be_visible()
    await page.get_by_role("button", name="Log out").click()
    form = page.get_by_test_id("login-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill("wrong password")
    await form.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("error")).to_have_text("Incorrect email or password")
    await form.get_by_label("Password").fill("browser password")
    await form.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("current-user")).to_have_text(f"Signed in as {email}")


async def test_coach_failure_is_shown_to_the_user(page: Page, orchestrator: Orchestrator) -> None:
    await register(page, f"browser-{uuid.uuid4().hex[:10]}@example.com", "browser password")
    business = page.get_by_test_id("business-form")
    await business.get_by_label("Business name").fill("Fragile Shop")
    await business.get_by_role("button", name="Add business").click()
    await expect(page.get_by_test_id("businesses")).to_contain_text("Fragile Shop")
    await orchestrator.mode("fail")
    coach = page.get_by_test_id("coach-form")
    await coach.get_by_label("Question").fill(f"Will it break? {uuid.uuid4().hex[:6]}")
    await coach.get_by_role("button", name="Ask the coach").click()
    await expect(page.get_by_test_id("error")).to_contain_text("No answer from the coach")
