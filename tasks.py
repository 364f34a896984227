"""Invoke tasks: the nox sessions' jobs in the current environment, for daily work.

uv sync                           once: .venv with invoke and the rest (see the README)
uv run invoke --list              the tasks
uv run invoke e2e                 the E2E suite inside the whole stack, on free ports
uv run invoke e2e -p '-k login'   pytest options go in -p, quoted
uv run invoke up                  the stack on its usual ports until Ctrl-C
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from invoke import Context, task
from invoke.exceptions import Exit

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.suites import (  # noqa: E402
    FRONTEND,
    LOGS,
    SUITES,
    cache_compiled_modules,
    command,
    environment,
    frontend_is_current,
    lint_commands,
    mark_frontend_installed,
    run_stages,
    stage_table,
)

PY = sys.executable
cache_compiled_modules()
TASK_OF_STAGE = {"db": "db-check", "auth": "auth", "api": "api", "e2e": "e2e"}
STOPPED_BY_SIGNAL = (130, 143)  # conductor's statuses after SIGINT and SIGTERM


def _quote(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def _status(c: Context, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run `argv` from the project root; its exit status (1 when invoke could not tell)."""
    with c.cd(str(ROOT)):
        result = c.run(_quote(argv), env=env or {}, warn=True, pty=sys.stdout.isatty())
    return 1 if result is None else result.exited


def _run(c: Context, argv: list[str], env: dict[str, str] | None = None) -> bool:
    return _status(c, argv, env) == 0


def _suite(c: Context, name: str, pytest_args: str, logs: str | None = None) -> bool:
    """The suite inside conductor when it needs services, logging to `logs` (by default
    LOGS/NAME)."""
    import shlex

    suite = SUITES[name]
    argv = command(suite, PY, shlex.split(pytest_args), logs or f"{LOGS}/{name}")
    return _run(c, argv, environment(suite))


def _npm_ci(c: Context) -> None:
    """`npm ci` in frontend/, skipped while package-lock.json is what was installed."""
    if frontend_is_current():
        return
    with c.cd(str(FRONTEND)):
        result = c.run("npm ci --no-audit --no-fund", warn=True)
    if result is None or not result.ok:
        raise Exit(
            "npm ci failed in frontend/; check Node.js 20+ and npm, then run invoke e2e again"
        )
    mark_frontend_installed()


PYTEST_HELP = "extra pytest arguments, quoted: -p '-k login -x'"


@task(help={"pytest": PYTEST_HELP})
def unit(c: Context, pytest: str = "") -> None:
    """Pure logic and conductor's own tests; no database."""
    if not _suite(c, "unit", pytest):
        raise Exit("unit tests failed; rerun the failing ones with invoke unit -p '--lf'")


@task(
    help={
        "url": "database URL (default: TEST_DATABASE_URL, DATABASE_URL, else a throwaway cluster)"
    }
)
def db_check(c: Context, url: str = "") -> None:
    """Stage 1: start the database (unless one is given) and check the connection."""
    ok = _run(c, [PY, "scripts/test_db_connection.py", url]) if url else _suite(c, "db", "")
    if not ok:
        raise Exit(
            "the database check failed; read its one-line diagnosis above, then run invoke db-check"
        )


@task(help={"pytest": PYTEST_HELP})
def auth(c: Context, pytest: str = "") -> None:
    """Stage 2: the database, the connection check, then the authentication suite."""
    if not _suite(c, "auth", pytest):
        raise Exit("the auth suite failed; see _e2e_logs/auth/ and run invoke auth -p '--lf'")


@task(help={"pytest": PYTEST_HELP})
def api(c: Context, pytest: str = "") -> None:
    """Stage 3: the database and cache, then the business and coaching suites."""
    if not _suite(c, "api", pytest):
        raise Exit("the api suites failed; see _e2e_logs/api/ and run invoke api -p '--lf'")


@task(help={"pytest": PYTEST_HELP})
def e2e(c: Context, pytest: str = "") -> None:
    """The whole stack through conductor on free ports, then tests/e2e."""
    _npm_ci(c)
    if not _e2e_with_leftover_check(c, pytest):
        raise Exit(
            "the E2E suite failed or left processes behind; each service's log is in "
            "_e2e_logs/e2e/; fix it, then run invoke e2e (invoke clean stops leftovers)"
        )


def _e2e_with_leftover_check(c: Context, pytest: str, logs: str = f"{LOGS}/e2e") -> bool:
    """The E2E suite, then proof that its stack left no process behind."""
    began = time.time()
    ok = _suite(c, "e2e", pytest, logs)
    clean = _run(c, [PY, "scripts/check_leftovers.py", logs, "--since", str(began)])
    return ok and clean


@task
def rebuild(c: Context) -> None:
    """The staged rebuild: db, auth, api, then e2e, stopping at the first failure."""

    def stage(name: str, logs: str) -> bool:
        if name == "e2e":
            _npm_ci(c)
            return _e2e_with_leftover_check(c, "", logs)
        return _suite(c, name, "", logs)

    results, failed = run_stages(stage)
    print(stage_table(results))
    if failed:
        raise Exit(
            f"stage {failed} failed (its logs: {LOGS}/rebuild/{failed}/); fix it, check with "
            f"invoke {TASK_OF_STAGE[failed]}, then run invoke rebuild"
        )


@task(help={"service": "services to start (repeatable; default: all)"}, iterable=["service"])
def up(c: Context, service: list[str] | None = None) -> None:
    """Start the whole stack on its usual ports, print the URLs, stop on Ctrl-C."""
    _npm_ci(c)
    status = _status(c, [PY, "-m", "conductor", "up", *(service or [])])
    if status in STOPPED_BY_SIGNAL:  # Ctrl-C or SIGTERM: the normal way out of `up`
        raise Exit(code=status)
    if status == 125:
        raise Exit(
            "a service failed to come up or died; its log tail is above "
            "(invoke clean stops leftovers)",
            code=status,
        )
    if status != 0:  # 2: conductor's one line above says why (configuration, busy folder)
        raise Exit(f"conductor up stopped with status {status}; the reason is above", code=status)


@task
def clean(c: Context) -> None:
    """Stop what killed runs left behind, then remove _e2e_logs/ (never while a run uses it)."""
    logs = ROOT / LOGS
    if not logs.is_dir():
        print(f"nothing to remove: {logs} does not exist")
        return
    # Every logs folder a run may have left: LOGS/NAME, LOGS/rebuild/STAGE, their run-PID.
    # conductor clean exits non-zero, naming the run, while one of them is in use.
    marks = (".conductor.lock", ".conductor-run.json")
    folders = sorted({p.parent for mark in marks for p in logs.rglob(mark)})
    refused = [
        folder
        for folder in folders
        if not _run(c, [PY, "-m", "conductor", "clean", "--logs-dir", str(folder)])
    ]
    if refused:
        raise Exit(
            f"conductor clean refused {', '.join(str(f) for f in refused)} (the reason is "
            f"above; a run still using it is named there); nothing was removed: stop that "
            "run, then invoke clean"
        )
    shutil.rmtree(logs, ignore_errors=True)
    print(f"removed {logs}")


@task
def bare(c: Context) -> None:
    """The README's commands in a fresh clone, with Chromium, redis-server and
    PostgreSQL's server binaries hidden: the check of `nox -s bare`."""
    status = _status(c, [PY, "-m", "tools.bare"])
    if status != 0:
        raise Exit(
            "the bare-machine check did not pass (the lines above say why); fix it, then "
            "invoke bare",
            code=status,
        )


@task
def lint(c: Context) -> None:
    """Ruff (lint and format), mypy --strict, xenon and import-linter: `nox -s lint`'s checks."""
    ok = True
    for argv in lint_commands(PY):
        ok = _run(c, argv) and ok
    if not ok:
        raise Exit("lint failed; ruff check --fix and ruff format fix most of it, then invoke lint")
