"""conductor's pytest plugin: one stack for a whole test run, xdist workers included.

    pytest --conductor-stack backend,frontend tests/e2e

The process that owns the run (the xdist controller, or the only process) starts the
services once, before any worker exists, and puts NAME_HOST, NAME_PORT, NAME_URL and
the conductor_env values in the environment the workers inherit; it stops them when the
run ends, however it ends. Instead of starting, it reuses the stack of a surrounding
`conductor run` (pytest is its COMMAND) or, per --conductor-attach, a live
`conductor up` of the same configuration and services.

Loaded by every pytest run in an environment that has conductor (entry point pytest11,
name `conductor`), so this module imports only pytest: conductor itself is imported once
a stack is asked for, and nothing happens when none is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conductor.pytest_plugin.fixture import ConductorStack

if TYPE_CHECKING:
    from conductor.pytest_plugin.controller import OwnedRun, Request

WORKER_KEY = "conductor_stack"
STACK_KEY = pytest.StashKey[ConductorStack]()
_RUN_KEY: pytest.StashKey[OwnedRun] = pytest.StashKey()
_SESSION_KEY = pytest.StashKey[pytest.Session]()
ATTACH_MODES = ("auto", "never", "require")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from conductor.pytest_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conductor", "services for the whole run, by conductor")
    group.addoption(
        "--conductor-stack",
        metavar="SERVICE[,SERVICE]",
        help="start these services (and their dependencies) once for the run; "
        "replaces the conductor_stack ini key",
    )
    group.addoption(
        "--conductor-config",
        metavar="FILE",
        help="conductor configuration (default: the nearest conductor.toml, or "
        "pyproject.toml with [tool.conductor], from the rootdir up)",
    )
    group.addoption(
        "--conductor-logs-dir",
        metavar="DIR",
        help="the stack's logs folder (default: logs_dir of the configuration)",
    )
    group.addoption(
        "--conductor-env",
        action="append",
        default=[],
        metavar="NAME=TEMPLATE",
        help="set NAME for the tests, e.g. DATABASE_URL={services.db.url} (repeatable; "
        "added to the conductor_env ini key)",
    )
    group.addoption(
        "--conductor-attach",
        choices=ATTACH_MODES,
        help="reuse a live `conductor up` of the same configuration and services in the "
        "same logs folder: auto (the default), never, or require",
    )
    parser.addini(
        "conductor_stack", "services to start once for the run (SERVICE[,SERVICE])", "linelist"
    )
    parser.addini("conductor_env", "NAME=TEMPLATE values for the tests", "linelist")
    parser.addini("conductor_config", "conductor configuration file", "string")
    parser.addini("conductor_logs_dir", "the stack's logs folder", "string")
    parser.addini("conductor_attach", "auto, never or require", "string", default="auto")
    parser.addini(
        "conductor_auto_ports", "a free port for every service (default: true)", "bool", True
    )


def _names(items: list[str]) -> list[str]:
    names: list[str] = []
    for item in items:
        for name in re.split(r"[,\s]+", item.strip()):
            if name and name not in names:
                names.append(name)
    return names


def _ini_path(config: pytest.Config, key: str) -> Path | None:
    value = str(config.getini(key) or "").strip()
    if not value:
        return None
    base = config.inipath.parent if config.inipath else config.rootpath
    return base / value


def _request(config: pytest.Config) -> Request | None:
    """What the run asks for, from options, ini and conftest hooks; None: nothing."""
    cli = config.getoption("conductor_stack")
    services = _names([cli] if cli else list(config.getini("conductor_stack")))
    for extra in config.hook.pytest_conductor_services(config=config):
        services += [name for name in _names(list(extra or [])) if name not in services]
    if not services:
        return None
    from conductor.pytest_plugin import controller

    env: dict[str, str] = {}
    for item in [*config.getini("conductor_env"), *config.getoption("conductor_env")]:
        name, sep, template = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise pytest.UsageError(
                f"conductor: conductor_env / --conductor-env wants NAME=TEMPLATE, not {item!r}"
            )
        env[name.strip()] = template
    cli_config = config.getoption("conductor_config")
    cli_logs = config.getoption("conductor_logs_dir")
    attach = config.getoption("conductor_attach") or str(config.getini("conductor_attach"))
    if attach not in ATTACH_MODES:
        raise pytest.UsageError(
            f"conductor: conductor_attach must be one of {', '.join(ATTACH_MODES)}, not {attach!r}"
        )
    return controller.Request(
        services=services,
        env=env,
        config_file=Path(cli_config) if cli_config else _ini_path(config, "conductor_config"),
        logs_dir=Path(cli_logs) if cli_logs else _ini_path(config, "conductor_logs_dir"),
        attach=attach,  # type: ignore[arg-type]
        auto_ports=bool(config.getini("conductor_auto_ports")),
        search_from=config.rootpath,
    )


def _nothing_runs(config: pytest.Config) -> bool:
    """Runs that only list or explain things need no services."""
    option = config.option
    return any(
        getattr(option, name, False)
        for name in ("help", "collectonly", "showfixtures", "show_fixtures_per_test", "markers")
    ) or bool(getattr(option, "setupplan", False))


@pytest.hookimpl(tryfirst=True)  # before conftests' pytest_configure, which may use it
def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the controller has the stack
        raw = workerinput.get(WORKER_KEY)
        if raw:
            config.stash[STACK_KEY] = ConductorStack.loads(raw)
        return
    if _nothing_runs(config):
        return
    request = _request(config)
    if request is None:
        return
    from conductor.pytest_plugin import controller

    run = controller.OwnedRun(request, verbosity=config.get_verbosity())
    config.stash[_RUN_KEY] = run
    config.stash[STACK_KEY] = run.start()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: hand each worker the stack; the environment it inherits has the rest."""
    stack = node.config.stash.get(STACK_KEY, None)
    if stack is not None:
        node.workerinput[WORKER_KEY] = stack.dumps()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    stack = config.stash.get(STACK_KEY, None)
    if stack is None or hasattr(config, "workerinput"):
        return None
    lines = [stack.description]
    if stack.logs_dir:
        lines.append(f"conductor: logs in {stack.logs_dir}")
    lines += [f"conductor: {name} unavailable: {why}" for name, why in stack.unavailable.items()]
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION_KEY] = session


@pytest.hookimpl(trylast=True)  # after xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN_KEY, None)
    if run is not None and run.died() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(_RUN_KEY, None)
    died = run.died() if run is not None else []
    if died:
        terminalreporter.section("conductor")
        for line in died:
            terminalreporter.write_line(line, red=True)


@pytest.hookimpl(trylast=True)  # after conftests' pytest_unconfigure, which may use it
def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN_KEY, None)
    if run is None:
        return
    del config.stash[_RUN_KEY]
    session = config.stash.get(_SESSION_KEY, None)
    stack = config.stash.get(STACK_KEY, None)
    summary = run.finish(
        exitstatus=int(session.exitstatus) if session is not None else None,
        args=list(config.invocation_params.args),
    )
    if stack is not None:
        stack.summary = summary


@pytest.fixture(scope="session")
def conductor_stack(pytestconfig: pytest.Config) -> ConductorStack:
    """The run's services: `.url(name)`, `.host(name)`, `.port(name)`, `.env`."""
    stack = pytestconfig.stash.get(STACK_KEY, None)
    if stack is None:
        pytest.fail(
            "conductor: this run asked for no services; pass --conductor-stack SERVICE "
            "or set the conductor_stack ini key",
            pytrace=False,
        )
    return stack


def stack_of(config: pytest.Config) -> ConductorStack | None:
    """The run's stack for other plugins and conftest hooks (None when none was asked
    for); in the controller, its `summary` is filled in once the run has ended."""
    return config.stash.get(STACK_KEY, None)
