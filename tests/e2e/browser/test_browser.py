"""In a real browser: Playwright driving Debian's Chromium through the front end.

The fixtures (`page` and what it stands on) are pytest-playwright-asyncio's, set up in
this folder's conftest.py; a failed test leaves its trace and screenshot there.
"""

from __future__ import annotations

import importlib.util
import re
import uuid

import pytest

from tests.e2e.conftest import Orchestrator

HAVE_PLUGIN = importlib.util.find_spec("pytest_playwright_asyncio") is not None
if HAVE_PLUGIN:
    from playwright.async_api import Page, expect

pytestmark = [
    pytest.mark.skipif(
        not HAVE_PLUGIN,
        reason="pytest-playwright-asyncio is not installed (dependency group e2e)",
    ),
]


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
    await coach.get_by_label("Question").fill(orchestrator.question("How do I get more customers?"))
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
    await coach.get_by_label("Question").fill(orchestrator.question("Will it break?"))
    await coach.get_by_role("button", name="Ask the coach").click()
    await expect(page.get_by_test_id("error")).to_contain_text("No answer from the coach")
