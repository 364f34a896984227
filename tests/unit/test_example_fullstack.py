"""examples/fullstack through `conductor run`, as its README says to run it.

The example is a stack nobody here wrote (its own FastAPI app, Alembic, a seed task, a
static front end); its own suite checks each step from inside. This test checks the
run from outside: exit 0, each step ran exactly once, and nothing is left running.
A second run with the api's password broken must fail fast on the api's fatal line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.optional import POSTGRES

pytestmark = [
    pytest.mark.postgres,
    POSTGRES.needed,
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fullstack"
MARKER = "FULLSTACK_EXAMPLE_TEST_MARKER"
# Settings the example reads: the real environment wins over its .env, so a value left
# in this session's environment would change what the example tests.
READ_BY_EXAMPLE = re.compile(
    r"(CONDUCTOR_.*|PROJECT_NAME|FIRST_SUPERUSER.*|POSTGRES_.*|SECRET_KEY|DATABASE_URL"
    r"|BACKEND_CORS_ORIGINS|PYTEST_ADDOPTS)"
)


@dataclass
class Run:
    code: int
    out: str
    seconds: float
    logs: Path

    @property
    def summary(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.logs / "summary.json").read_text())
        return data

    def service(self, name: str) -> dict[str, object]:
        services = self.summary["services"]
        assert isinstance(services, dict)
        entry: dict[str, object] = services[name]
        return entry


class Runner:
    """`conductor run` of a copy or of the example itself, with this test's marker in
    every process it starts, so the test can prove that none outlives the run."""

    def __init__(self, tmp_path: Path, cache: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.logs = tmp_path / "logs"
        self.env = {k: v for k, v in os.environ.items() if not READ_BY_EXAMPLE.fullmatch(k)}
        # The PostgreSQL template cache of this session, never the user's ~/.cache.
        self.env.update({MARKER: self.marker, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"})
        # Compiled modules never beside the example's sources, but cached for the session:
        # without them its suite's pytest re-rewrote every plugin's modules on each run.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.setdefault("PYTHONPYCACHEPREFIX", str(cache / "pycache"))

    def run(self, config: Path, *command: str, timeout: float = 240) -> Run:
        argv = [sys.executable, "-m", "conductor", "run", "--config", str(config)]
        argv += ["--logs-dir", str(self.logs), "--", *command]
        started = time.monotonic()
        done = subprocess.run(
            argv,
            env=self.env,
            cwd=config.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(done.returncode, done.stdout, time.monotonic() - started, self.logs)

    def left(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if (
                    proc.environ().get(MARKER) == self.marker
                    and proc.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(proc)
        return found


@pytest.fixture(scope="session")
def pg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture
def runner(tmp_path: Path, pg_cache: Path) -> Iterator[Runner]:
    runner = Runner(tmp_path, pg_cache)
    yield runner
    left = runner.left()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


def assert_nothing_left(run: Run, runner: Runner) -> None:
    """Every pid summary.json names is gone, no process carries the test's marker, and
    the database's run folder is removed."""
    services = run.summary["services"]
    assert isinstance(services, dict)
    for name, entry in services.items():
        pid = entry["pid"]
        if isinstance(pid, int):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                assert proc.environ().get(MARKER) != runner.marker, f"{name} (pid {pid}) left"
    assert runner.left() == []
    folders = re.findall(r"db: run folder (\S+)", (run.logs / "conductor.log").read_text())
    assert folders
    assert not any(Path(folder).exists() for folder in folders)


def test_the_examples_suite_passes_through_conductor_run(runner: Runner) -> None:
    run = runner.run(
        EXAMPLE / "conductor.toml", sys.executable, "-m", "pytest", "-p", "no:cacheprovider"
    )
    assert run.code == 0, run.out
    # "N passed in" with nothing beside it: none failed, skipped or errored. Past a
    # minute (under load) pytest adds the time as h:mm:ss: "9 passed in 89.14s (0:01:29)".
    passed = re.search(r"= (\d+) passed in [\d.]+s(?: \(\d+:\d\d:\d\d\))? =", run.out)
    assert passed, run.out
    assert int(passed[1]) >= 9, run.out
    prestart = run.service("prestart")
    assert prestart["status"] == "completed"
    assert isinstance(prestart["duration_s"], float)
    log = (run.logs / "prestart.log").read_text()
    # Migrated and seeded once: the example's suite reran the seed, which must not
    # have created anything (it checks the table), and prestart ran only once.
    assert log.count("Running upgrade  -> 0001") == 1, log
    assert log.count("seed: created first superuser admin@example.com") == 1, log
    assert_nothing_left(run, runner)


def copy_of_the_example(tmp_path: Path) -> Path:
    copy = tmp_path / "fullstack"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns("_e2e_logs", "__pycache__", ".pytest_cache")
    )
    return copy / "conductor.toml"


def test_a_wrong_api_password_fails_the_run_on_its_fatal_line(
    runner: Runner, tmp_path: Path
) -> None:
    config = copy_of_the_example(tmp_path)
    text = config.read_text()
    right = 'env = { DATABASE_URL = "{services.db.url}", BACKEND_CORS_ORIGINS'
    wrong = (
        'env = { DATABASE_URL = "postgresql://{services.db.user}:wrong-password@{host}:'
        '{services.db.port}/{services.db.database}", BACKEND_CORS_ORIGINS'
    )
    assert text.count(right) == 1
    # ready_timeout 600: only the fail line can end this run within the test's time.
    text = text.replace(right, wrong).replace("ready_timeout = 30", "ready_timeout = 600")
    config.write_text(text)
    run = runner.run(config, sys.executable, "-c", "raise SystemExit('COMMAND ran')")
    assert run.code == 125, run.out
    assert "service 'api' printed a fatal line" in run.out, run.out
    assert 'password authentication failed for user "app"' in run.out
    assert "COMMAND ran" not in run.out
    api = run.service("api")
    timeline = api["timeline"]
    assert isinstance(timeline, list)
    started = next(t["t"] for t in timeline if t["status"] == "started")
    failed_at = api["failed_at_s"]
    assert isinstance(failed_at, float)
    # Fails on the first probe's line: seconds (an app's import under load), not 600.
    assert failed_at - started < 60, (started, failed_at)
    assert_nothing_left(run, runner)


def test_without_the_init_sql_prestart_fails_and_the_api_never_starts(
    runner: Runner, tmp_path: Path
) -> None:
    """The init file is load-bearing: the migration needs its schema, so a stack that
    skipped it stops at prestart (125), naming the cause, before the api starts."""
    config = copy_of_the_example(tmp_path)
    text = config.read_text()
    assert text.count('init = ["db/init.sql"]\n') == 1
    config.write_text(text.replace('init = ["db/init.sql"]\n', ""))
    run = runner.run(config, sys.executable, "-c", "raise SystemExit('COMMAND ran')")
    assert run.code == 125, run.out
    assert "service 'prestart' exited with status 1 (a task must exit 0)" in run.out
    assert "alembic upgrade head failed: DBAPIError: " in run.out
    assert 'schema "app" does not exist' in run.out
    assert run.service("api")["status"] == "not started"
    assert_nothing_left(run, runner)
