"""What each test suite is: its folders, its marker and the services it needs.

Written once, read by tests/conftest.py (markers), noxfile.py and tasks.py (what to
start and what to run), so the three never disagree. Standard library only: nox
imports it before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
_STAMP = FRONTEND / "node_modules" / ".installed-lock.sha256"

DB_URL_ENV = ("TEST_DATABASE_URL", "DATABASE_URL")
# Each nox session's and invoke task's services log to LOGS/NAME (conductor's logs folder).
LOGS = "_e2e_logs"
# Where the suites' interpreters keep compiled modules when the user asked for none
# beside the sources (cache_compiled_modules).
PYCACHE = ROOT / ".pycache"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    paths: tuple[str, ...]
    # conductor services from [tool.conductor] in pyproject.toml
    services: tuple[str, ...] = ()
    # values for the test command, templated by conductor (--env NAME=TEMPLATE)
    env: dict[str, str] = field(default_factory=dict)
    # run scripts/test_db_connection.py before the tests
    check_database: bool = False
    # spread over CPUs with pytest-xdist (e2e shares one stack and its orchestrator mode)
    parallel: bool = True
    # measure conductor's branch coverage (its processes too) and hold its floor
    coverage: bool = False
    # conductor's configuration, when not pyproject's [tool.conductor]
    config: str | None = None


_DB = {"TEST_DATABASE_URL": "{services.db.url}"}

SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "unit",
            "Pure logic and conductor's own tests; no database.",
            ("tests/unit", "packages/conductor/tests"),
            coverage=True,
        ),
        Suite(
            "db",
            "Stage 1: start the database, check the connection, test the session foundation.",
            ("tests/db",),
            ("db",),
            _DB,
            check_database=True,
        ),
        Suite(
            "auth",
            "Stage 2: the database, the connection check, then the authentication suite.",
            ("tests/auth",),
            ("db",),
            _DB,
            check_database=True,
        ),
        Suite(
            "api",
            "Stage 3: the database and cache, then the business and coaching suites.",
            ("tests/business", "tests/coaching"),
            ("db", "cache"),
            {**_DB, "REDIS_URL": "{services.cache.url}"},
        ),
        Suite(
            "sqlite",
            "The database suites on SQLite, as on a machine without PostgreSQL.",
            ("tests/db", "tests/auth", "tests/business", "tests/coaching"),
        ),
        Suite(
            "e2e",
            "The whole stack through conductor on free ports: API, front end, browser.",
            ("tests/e2e",),
            ("backend", "frontend"),
            {"E2E_ARTIFACTS": "{logs_dir}/browser"},
            parallel=False,
        ),
    )
}

STAGES = ("db", "auth", "api", "e2e")

# The marker every test in a folder gets, so `-m auth` selects exactly that folder.
FOLDER_MARKERS: dict[str, str] = {
    "unit": "unit",
    "db": "db",
    "auth": "auth",
    "business": "business",
    "coaching": "coaching",
    "e2e": "e2e",
}

# Folders whose tests use the test database fixtures.
DATABASE_FOLDERS = frozenset({"db", "auth", "business", "coaching"})

# What `pytest PATH` starts by itself, through conductor's pytest plugin, for each folder
# it selects: the database folders need the database, tests/e2e the whole stack. (nox
# and invoke start a suite's `services` around pytest; the plugin then uses those.)
FOLDER_SERVICES: dict[str, tuple[str, ...]] = {
    **{folder: ("db",) for folder in sorted(DATABASE_FOLDERS)},
    "e2e": SUITES["e2e"].services,
}


def services_for_folders(folders: set[str], database_given: bool) -> list[str]:
    """The services a pytest run of these test folders asks conductor for; none for the
    database when the run was given one (TEST_DATABASE_URL)."""
    wanted: list[str] = []
    for folder in sorted(folders):
        for name in FOLDER_SERVICES.get(folder, ()):
            if name not in wanted and not (name == "db" and database_given):
                wanted.append(name)
    return wanted


def given_database() -> tuple[str, str] | None:
    """A database the user named, and the variable that named it: then conductor does
    not start one. The one rule for nox, invoke and plain pytest (tests/database.py)."""
    for name in DB_URL_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def given_database_url() -> str | None:
    given = given_database()
    return given[1] if given else None


def command(suite: Suite, python: str, pytest_args: list[str], logs_dir: str) -> list[str]:
    """The whole command for a suite: conductor around the stage when it needs services."""
    spread = suite.parallel and not any(
        a in ("-n", "--numprocesses", "-p") or a.startswith(("-n", "--numprocesses="))
        for a in pytest_args
    )
    tests = [
        python,
        *(["-m", "coverage", "run"] if suite.coverage else []),
        "-m",
        "pytest",
        *(["-n", "auto"] if spread else []),
        *suite.paths,
        *pytest_args,
    ]
    stage = [python, "scripts/stage.py", *(["--check-db"] if suite.check_database else []), "--"]
    inner = [*stage, *tests] if suite.check_database else tests
    services = list(suite.services)
    env = dict(suite.env)
    given = given_database_url()
    if given and "db" in services:
        services.remove("db")
        env.pop("TEST_DATABASE_URL", None)
    if not services:
        return inner
    flags = ["--auto-ports", "--if-busy", "subfolder", "--logs-dir", logs_dir]
    if suite.config is not None:
        flags += ["--config", suite.config]
    for key, template in env.items():
        flags += ["--env", f"{key}={template}"]
    return [python, "-m", "conductor", "run", *flags, *services, "--", *inner]


# What the lint checks read: everything of the project's that is Python.
LINTED = (
    "src",
    "tests",
    "tools",
    "packages/conductor",
    "scripts",
    "benchmarks",
    "examples",
    "noxfile.py",
    "tasks.py",
)


def lint_commands(python: str, mypy_args: list[str] | None = None) -> list[list[str]]:
    """Every lint check, for `nox -s lint` and `invoke lint` alike: ruff's lint and
    format, mypy --strict (its files are in pyproject.toml), xenon: no function of
    conductor's graded worse than C by radon, and import-linter: conductor's layers and
    one-owner rules ([tool.importlinter] in pyproject.toml; it has no `python -m`)."""
    return [
        [python, "-m", "ruff", "check", *LINTED],
        [python, "-m", "ruff", "format", "--check", *LINTED],
        [python, "-m", "mypy", *(mypy_args or [])],
        [python, "-m", "xenon", "--max-absolute", "C", "packages/conductor/src/conductor"],
        [python, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
    ]


COVERAGE_DATA = ROOT / ".coverage-data"


def coverage_report(python: str) -> list[list[str]]:
    """After a measured suite: merge the data of every process, then the report,
    which fails under the floor in packages/conductor/pyproject.toml where every test
    of conductor's can run (tools/coverage_floor.py)."""
    return [
        [python, "-m", "coverage", "combine", "--quiet"],
        [python, "-m", "tools.coverage_floor"],
    ]


def cache_compiled_modules() -> None:
    """Let every interpreter the suites start reuse compiled modules, in PYCACHE.

    Under PYTHONDONTWRITEBYTECODE (set on this project's own machines) nothing is ever
    cached: each of the hundreds of interpreters the tests start compiled aiohttp, rich
    and conductor again, and each pytest process (pytester runs, xdist workers, the
    examples' suites) re-rewrote the asserts of every module of every plugin's
    distribution (hypothesis, anyio, conductor: pytest rewrites them whole). An empty
    pytest run cost 2.5 CPU-s against 1.1 with the caches. The caches go to PYCACHE
    (ignored by git), not beside the sources, so the tree stays as clean as asked;
    pytest keeps its rewritten modules there too. Called first by noxfile.py and
    tasks.py, so every command they run inherits it."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))


def environment(suite: Suite) -> dict[str, str]:
    """Extra environment for a suite's command."""
    env: dict[str, str] = {}
    if suite.coverage:
        # Absolute, so the conductor processes the tests start in their own folders
        # write beside the rest; the rcfile reaches them through the environment too.
        shutil.rmtree(COVERAGE_DATA, ignore_errors=True)
        COVERAGE_DATA.mkdir()
        env["COVERAGE_FILE"] = str(COVERAGE_DATA / "conductor")
        env["COVERAGE_RCFILE"] = str(ROOT / "packages" / "conductor" / "pyproject.toml")
    given = given_database_url()
    if given and "TEST_DATABASE_URL" in suite.env:
        env["TEST_DATABASE_URL"] = given
    if suite.name == "sqlite":
        env["TEST_DATABASE_URL"] = "sqlite://"
    return env


def run_stages(
    run: Callable[[str, str], bool],
) -> tuple[list[tuple[str, str, float]], str | None]:
    """Run STAGES in order with `run(name, logs_dir) -> passed?`, skipping the rest after
    the first failure; the (stage, result, seconds) rows and the failed stage, if any.

    Each stage logs to its own folder, LOGS/rebuild/NAME: in one folder each stage's
    db.log and summary.json would overwrite the last one's."""
    results: list[tuple[str, str, float]] = []
    failed: str | None = None
    for name in STAGES:
        if failed:
            results.append((name, "skipped", 0.0))
            continue
        started = time.monotonic()
        ok = run(name, f"{LOGS}/rebuild/{name}")
        results.append((name, "passed" if ok else "FAILED", time.monotonic() - started))
        failed = None if ok else name
    return results, failed


def stage_table(results: list[tuple[str, str, float]]) -> str:
    """The staged rebuild's closing table: stage, result, duration."""
    width = max([len(n) for n, _, _ in results] + [5])
    lines = [f"{'stage':<{width}}  result   duration", f"{'-' * width}  -------  --------"]
    for name, result, seconds in results:
        lines.append(f"{name:<{width}}  {result:<7}  {seconds:7.1f}s")
    return "\n".join(lines)


def _lock_digest() -> str:
    return hashlib.sha256((FRONTEND / "package-lock.json").read_bytes()).hexdigest()


@contextmanager
def frontend_install_lock() -> Iterator[None]:
    """Held around `npm ci`, so two runs started together do not both rewrite
    node_modules (the second finds it current and skips)."""
    try:
        import fcntl
    except ImportError:  # Windows: one run at a time there
        yield
        return
    with (FRONTEND / ".npm-install.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def frontend_is_current() -> bool:
    """Whether node_modules was installed from the package-lock.json there now."""
    return _STAMP.is_file() and _STAMP.read_text().strip() == _lock_digest()


def mark_frontend_installed() -> None:
    _STAMP.write_text(_lock_digest() + "\n")
