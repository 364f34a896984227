"""Every interpreter the suites start caches compiled modules (suites.cache_compiled_modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import suites

PROBE = "import sys; print(sys.dont_write_bytecode, sys.pycache_prefix)"


def child_sees() -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    return done.stdout.strip()


def test_where_no_bytecode_was_asked_for_it_is_cached_away_from_the_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    suites.cache_compiled_modules()
    assert child_sees() == f"False {suites.PYCACHE}"


def test_a_prefix_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path))
    suites.cache_compiled_modules()
    assert child_sees() == f"False {tmp_path}"


def test_where_bytecode_is_written_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    suites.cache_compiled_modules()
    assert child_sees() == "False None"
