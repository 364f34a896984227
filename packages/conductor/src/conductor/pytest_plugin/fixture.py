"""The stack as a test run sees it: the `conductor_stack` fixture.

Built once in the process that owns the run (the xdist controller, or the only
process) and handed to each xdist worker as JSON, so it holds plain data only and
imports nothing but pytest: a worker never starts, attaches to or stops anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pytest

Mode = Literal["started", "attached", "surrounding"]


@dataclass
class ConductorStack:
    """Services of this test run, and how to reach them.

    `url`, `host` and `port` fail the calling test, naming what is missing, when the
    run has no such service: a test that needs a service it cannot get fails, it is
    never skipped."""

    mode: Mode
    description: str
    logs_dir: str | None
    # name -> {"host", "port", "url"} of every service that runs
    services: dict[str, dict[str, Any]]
    # the variables the run put in the environment (NAME_HOST/PORT/URL, conductor_env)
    env: dict[str, str]
    # services of the configuration this run cannot have: name -> why, in a few words
    # (an optional service not installed here, or one the surrounding run lacks)
    unavailable: dict[str, str] = field(default_factory=dict)
    # durations and each service's report, once the run has ended (controller only)
    summary: dict[str, Any] | None = None

    def has(self, name: str) -> bool:
        return name in self.services

    def url(self, name: str) -> str:
        url = self._address(name).get("url")
        if not url:
            pytest.fail(f"conductor: service '{name}' has no url", pytrace=False)
        return str(url)

    def host(self, name: str) -> str:
        return str(self._address(name)["host"])

    def port(self, name: str) -> int:
        port = self._address(name).get("port")
        if port is None:
            pytest.fail(f"conductor: service '{name}' has no port", pytrace=False)
        return int(port)

    def why_missing(self, name: str) -> str:
        """Why `name` is not available in this run, in one line."""
        if name in self.unavailable:
            return f"conductor: service '{name}' is not available: {self.unavailable[name]}"
        running = ", ".join(self.services) or "none"
        return (
            f"conductor: service '{name}' is not in this run's stack (running: {running}); "
            "ask for it with --conductor-stack or the conductor_stack ini key"
        )

    def _address(self, name: str) -> dict[str, Any]:
        address = self.services.get(name)
        if address is None:
            pytest.fail(self.why_missing(name), pytrace=False)
        return address

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> ConductorStack:
        return cls(**json.loads(raw))
