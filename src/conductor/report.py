"""What people and machines are told: live progress, failures with their log tail,
the closing table, and summary.json.

On a terminal, progress is a spinner per service with its elapsed time; elsewhere (CI)
it is one plain line per event. Every event also goes to conductor.log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from conductor.logs import logger, tail

TAIL_LINES = 30
_WAITING = {"waiting", "starting", "started"}


@dataclass
class ServiceReport:
    """Everything summary.json and the closing table say about one service."""

    name: str
    host: str | None = None
    port: int | None = None
    url: str | None = None
    log: str | None = None
    pid: int | None = None
    status: str = "not started"
    ready_after_s: float | None = None
    exit_code: int | None = None
    stop_s: float | None = None
    stopped: str | None = None
    detail: str = ""
    since: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "status": self.status,
            "ready_after_s": _round(self.ready_after_s),
            "exit_code": self.exit_code,
            "stop_s": _round(self.stop_s),
            "stopped": self.stopped,
            "log": self.log,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Reporter:
    """Console output for one run; stderr, so COMMAND's stdout stays its own."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.services: dict[str, ServiceReport] = {}
        self._live: Live | None = None

    # progress -----------------------------------------------------------------
    def track(self, reports: Mapping[str, ServiceReport]) -> None:
        self.services = dict(reports)
        if self.console.is_terminal and not self.quiet:
            self._live = Live(
                _Progress(self), console=self.console, refresh_per_second=12, transient=True
            )
            self._live.start()

    def untrack(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            for report in self.services.values():
                if report.status in ("ready", "reused"):
                    self._line(
                        f"[green]✓[/] {report.name} {report.status} after "
                        f"{report.ready_after_s or 0:.2f}s"
                    )

    def event(self, service: str, status: str, detail: str = "") -> None:
        report = self.services.get(service)
        if report is not None:
            report.status, report.detail, report.since = status, detail, time.monotonic()
        logger.info("%s: %s%s", service, status, f" ({detail})" if detail else "")
        if self._live is None:
            self._line(f"{escape(service)}: {status}" + (f" ({escape(detail)})" if detail else ""))

    def failure(self, service: str, reason: str, log_path: Path | None) -> None:
        """A service failed: say who and why, then the end of its log."""
        logger.error("%s %s", service, reason)
        lines = tail(log_path, TAIL_LINES) if log_path else []
        for line in lines:
            logger.error("%s| %s", service, line)
        self._print(f"[bold red]✗ service '{escape(service)}' {escape(reason)}[/]")
        if log_path is not None:
            self._print(f"  last {len(lines)} lines of {log_path}:")
            for line in lines:
                self._print(Text(f"  {service} | {line}", style="dim"))

    def warning(self, message: str) -> None:
        logger.warning("%s", message)
        self._print(f"[yellow]conductor: warning: {escape(message)}[/]")

    def info(self, message: str) -> None:
        logger.info("%s", message)
        self._line(escape(message))

    def log_line(self, service: str, line: bytes) -> None:
        """--show-logs: one service line, prefixed with its name."""
        text = line.decode("utf-8", "replace")
        self._print(Text(f"{service} | ", style="cyan") + Text(text), markup=False)

    def _line(self, message: str) -> None:
        if not self.quiet:
            self._print(f"conductor: {message}")

    def _print(self, message: RenderableType, *, markup: bool = True) -> None:
        self.console.print(message, markup=markup, soft_wrap=True)

    # closing ------------------------------------------------------------------
    def table(self) -> None:
        table = Table(title="conductor", title_justify="left", show_edge=False)
        for column in ("service", "ready after", "stopped", "log"):
            table.add_column(column)
        for report in self.services.values():
            ready = (
                f"{report.ready_after_s:.2f}s"
                if report.ready_after_s is not None
                else report.status
            )
            table.add_row(report.name, ready, report.stopped or "-", report.log or "-")
        self.console.print(table)


class _Progress:
    """The live view: one row per service, a spinner while it is on its way."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.spinners: dict[str, Spinner] = {}

    def __rich__(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for report in self.reporter.services.values():
            if report.status in _WAITING:
                icon: RenderableType = self.spinners.setdefault(report.name, Spinner("dots"))
            else:
                icon = Text(
                    "✓" if report.status in ("ready", "reused") else "•",
                    style="green" if report.status in ("ready", "reused") else "",
                )
            elapsed = f"{now - report.since:5.1f}s" if report.status in _WAITING else ""
            table.add_row(
                icon,
                Text(report.name, style="bold"),
                Text(report.status),
                Text(elapsed, style="dim"),
                Text(report.detail, style="dim"),
            )
        return table


def write_summary(
    path: Path,
    *,
    exit_code: int,
    command: list[str] | None,
    durations: Mapping[str, float | None],
    services: Mapping[str, ServiceReport],
) -> None:
    data = {
        "exit_code": exit_code,
        "command": command,
        "durations": {k: _round(v) for k, v in durations.items()},
        "services": {name: report.as_json() for name, report in services.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
