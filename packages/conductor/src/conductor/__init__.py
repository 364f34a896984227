"""conductor: start services, run a command inside them, and always tear them down.

The API the CLI is built on, for nox sessions, invoke tasks and other projects:

    config = load_config()                      # [tool.conductor] of the nearest pyproject
    async with Stack(config, ["backend"]) as stack:
        status = await stack.run(["pytest"])    # stack.env has BACKEND_URL, ...

`run_command()` is the whole `conductor run` (signals, --timeout, summary) as one call.
"""

from __future__ import annotations

__version__ = "0.1.0"

import asyncio
from pathlib import Path

from conductor.config import Config, ServiceSpec, load_config
from conductor.errors import ConductorError, ConfigError, ServiceFailed
from conductor.runner import Options
from conductor.stack import Stack

__all__ = [
    "ConductorError",
    "Config",
    "ConfigError",
    "Options",
    "ServiceFailed",
    "ServiceSpec",
    "Stack",
    "__version__",
    "load_config",
    "run_command",
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
) -> int:
    """`conductor run` from Python (blocking); the exit status it would give."""
    from conductor import runner

    options = Options(
        services=list(services or []),
        logs_dir=logs_dir,
        timeout=timeout,
        auto_ports=auto_ports,
        show_logs=show_logs,
    )
    return asyncio.run(runner.run(load_config(config), command, options))
