"""tests/optional.py: which tests count as needing a browser, and what counts as a
Chromium (found by the adversarial review of issue 16)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import optional
from tools.bare import MISSING

plugin = pytest.importorskip("pytest_playwright_asyncio.pytest_playwright")
# What a plugin fixture hands out that can open a browser: Playwright itself (its
# .chromium), a browser type, a launcher, a browser, a context factory, a context, a page.
OPENS_A_BROWSER = ("Playwright", "BrowserType", "Browser", "CreateContextCallback", "Page")


def plugin_fixtures_that_open_a_browser() -> set[str]:
    """Read from the plugin's source (pytest has no public way to list a module's
    fixture definitions across the versions pyproject.toml allows)."""
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(plugin))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.returns is None:
            continue
        is_fixture = any("fixture" in ast.unparse(d) for d in node.decorator_list)
        returns = ast.unparse(node.returns)
        if is_fixture and any(kind in returns for kind in OPENS_A_BROWSER):
            found.add(node.name)
    return found


def test_every_plugin_fixture_that_opens_a_browser_skips_without_chromium() -> None:
    """A test asking for `browser_type` (or `playwright`) and launching from it fell
    through to Playwright's own browser download: the hook knew only five names."""
    opening = plugin_fixtures_that_open_a_browser()
    assert {"page", "browser", "browser_type", "playwright"} <= opening
    for name in opening:
        assert optional.needs_browser(SimpleNamespace(fixturenames=[name])), name  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["not executable", "a folder"])
def test_a_chromium_that_cannot_run_is_not_a_chromium(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHROMIUM naming a file without execute permission counted as present: the browser
    tests then errored launching it instead of skipping."""
    given = tmp_path / "chrome"
    if kind == "a folder":
        given.mkdir()
    else:
        given.write_text("#!/bin/sh\n")
    monkeypatch.setenv("CHROMIUM", str(given))
    assert optional.CHROMIUM.path != str(given)


def test_conductors_own_skip_for_postgresql_is_worded_as_the_bare_check_reads() -> None:
    """conductor's tests are a package of their own and keep their own `needs_postgres`:
    its reason must still be the one wording nox -s bare accepts."""
    support = (Path(__file__).parents[2] / "packages/conductor/tests/support.py").read_text()
    reasons = re.findall(r'reason="([^"]*)"', support)
    assert reasons, "needs_postgres's reason was not found in support.py"
    assert all(r.startswith(MISSING) for r in reasons)


def test_conductors_own_skip_for_podman_is_worded_as_the_bare_check_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The container tests' skip (packages/conductor/tests/images.py) is in that wording too."""
    path = Path(__file__).parents[2] / "packages/conductor/tests/images.py"
    spec = importlib.util.spec_from_file_location("conductor_test_images", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    reason = module.NEEDS_ENGINE
    assert reason.startswith(MISSING)
    assert reason.endswith("podman (apt-get install podman runc mmdebstrap)")
