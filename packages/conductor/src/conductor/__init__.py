"""conductor: start services, run a command inside them, and always tear them down.

The API the CLI is built on, for nox sessions, invoke tasks and other projects:

    config = load_config()                      # [tool.conductor] of the nearest pyproject
    async with Stack(config, ["backend"]) as stack:
        status = await stack.run(["pytest"])    # stack.env has BACKEND_URL, ...

`run_command()` is the whole `conductor run` (signals, --timeout, summary) as one call.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from conductor.config.loading import Config, ServiceSpec, load_config
    from conductor.errors import ConductorError, ConfigError, ServiceFailed
    from conductor.postgres.binaries import POSTGRES_BIN_FOLDERS, find_bindir
    from conductor.postgres.clusters import quote_ident
    from conductor.pytest_plugin.fixture import ConductorStack
    from conductor.pytest_plugin.in_thread import HeldInThread
    from conductor.pytest_plugin.plugin import stack_of
    from conductor.report.console import Reporter
    from conductor.runner import Options
    from conductor.stack import Stack

# Imported on first use, not with the package: the pytest plugin (conductor.pytest_plugin.plugin)
# is loaded by every pytest run in an environment that has conductor, and must cost
# nothing there until a stack is asked for.
_LAZY = {
    "Config": "conductor.config.loading",
    "ServiceSpec": "conductor.config.loading",
    "load_config": "conductor.config.loading",
    "ConductorError": "conductor.errors",
    "ConfigError": "conductor.errors",
    "ServiceFailed": "conductor.errors",
    "find_bindir": "conductor.postgres.binaries",
    "POSTGRES_BIN_FOLDERS": "conductor.postgres.binaries",
    "quote_ident": "conductor.postgres.clusters",
    "Reporter": "conductor.report.console",
    "ConductorStack": "conductor.pytest_plugin.fixture",
    "HeldInThread": "conductor.pytest_plugin.in_thread",
    "stack_of": "conductor.pytest_plugin.plugin",
    "Options": "conductor.runner",
    "Stack": "conductor.stack",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conductor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "POSTGRES_BIN_FOLDERS",
    "ConductorError",
    "ConductorStack",
    "Config",
    "ConfigError",
    "HeldInThread",
    "Options",
    "Reporter",
    "ServiceFailed",
    "ServiceSpec",
    "Stack",
    "__version__",
    "find_bindir",
    "load_config",
    "quote_ident",
    "run_command",
    "stack_of",
]


def run_command(
    command: list[str],
    services: list[str] | None = None,
    *,
    config: Path | str | None = None,
    logs_dir: Path | None = None,
    timeout: float | None = None,
    auto_ports: bool = False,
    show_logs: bool = False,
    keep_going: bool = False,
    stop_grace: float | None = None,
    keep_logs: int | None = None,
) -> int:
    """`conductor run` from Python (blocking); the exit status it would give.

    `keep_going` and `stop_grace` are `--keep-going` and `--stop-grace`: by default a
    service that dies while COMMAND runs stops COMMAND. `keep_logs` is `--keep-logs`
    (None: the configuration's [run].keep_logs)."""
    import asyncio

    from conductor import runner
    from conductor.config.loading import load_config
    from conductor.runner import Options

    options = Options(
        services=list(services or []),
        logs_dir=logs_dir,
        timeout=timeout,
        auto_ports=auto_ports,
        show_logs=show_logs,
        keep_going=keep_going,
        stop_grace=runner.DEATH_GRACE if stop_grace is None else stop_grace,
        keep_logs=keep_logs,
    )
    return asyncio.run(runner.run(load_config(config), command, options))
