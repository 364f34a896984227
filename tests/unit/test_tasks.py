"""tasks.py: what `invoke up` says once conductor's `up` has ended."""

from __future__ import annotations

import pytest
import tasks
from invoke import MockContext, Result
from invoke.exceptions import Exit


def _up_ending_with(status: int, monkeypatch: pytest.MonkeyPatch) -> Exit | None:
    """`invoke up` where `conductor up` ends with `status`; the Exit it raises, if any."""
    monkeypatch.setattr(tasks, "_npm_ci", lambda c: None)  # no frontend needed here
    context = MockContext(run=Result(exited=status))
    try:
        tasks.up(context)
    except Exit as exc:
        return exc
    return None


@pytest.mark.parametrize("status", [130, 143], ids=["SIGINT", "SIGTERM"])
def test_stopping_up_with_a_signal_is_no_failure(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is how `up` is meant to end: no "did not come up", conductor's status kept."""
    ended = _up_ending_with(status, monkeypatch)
    assert ended is not None
    assert ended.message is None
    assert ended.code == status


def test_a_failed_service_is_reported_with_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    ended = _up_ending_with(125, monkeypatch)
    assert ended is not None
    assert ended.message is not None
    assert "log tail is above" in ended.message
    assert ended.code == 125


def test_up_ending_cleanly_raises_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _up_ending_with(0, monkeypatch) is None
