"""tasks.py: what `invoke up` says once conductor's `up` has ended, and `invoke clean`
never removing a live run's logs."""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from invoke import Context, MockContext, Result
from invoke.exceptions import Exit

import tasks
from tests import suites


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


class Shell(Context):  # type: ignore[misc]
    """Runs the task's commands with subprocess (invoke's own runner would read this
    test's stdin and leave its pipes to the garbage collector)."""

    def run(self, command: str, **kwargs: Any) -> Result:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
        return Result(stdout=proc.stdout, stderr=proc.stderr, exited=proc.returncode)


def test_invoke_clean_never_removes_a_live_runs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / tasks.LOGS / "e2e" / f"run-{os.getpid()}"
    live.mkdir(parents=True)
    (live / "backend.log").write_text("a live run's log")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    # What a live conductor holds while it runs: the folder's lock, with its pid in it.
    with (live / ".conductor.lock").open("a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(str(os.getpid()))
        lock.flush()
        with pytest.raises(Exit, match="nothing was removed"):
            tasks.clean(Shell())
    assert (live / "backend.log").read_text() == "a live run's log"
    # Once the run is over, clean removes it all.
    tasks.clean(Shell())
    assert not (tmp_path / tasks.LOGS).exists()


def test_invoke_lint_runs_the_checks_of_nox_lint() -> None:
    """One list of lint checks for both entry points: xenon was once nox's alone."""
    ran: list[str] = []

    class Recording(MockContext):  # type: ignore[misc]
        def run(self, command: str, **kwargs: Any) -> Result:
            ran.append(command)
            return Result(exited=0)

    tasks.lint(Recording())
    assert ran == [shlex.join(argv) for argv in suites.lint_commands(tasks.PY)]
    assert any(" xenon " in c for c in ran)
    assert any("importlinter" in c for c in ran)  # lint-imports: the layers
