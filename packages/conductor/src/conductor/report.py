"""What people and machines are told: live progress, failures with their log tail,
the closing table, and summary.json.

On a terminal, progress is a spinner per service with its elapsed time; elsewhere (CI)
it is one plain line per event. Every event also goes to conductor.log.
"""

from __future__ import annotations

import json
import sys
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conductor import files, masking
from conductor.logs import TAIL_BYTES, TAIL_LINE_BYTES, Piece, Tail, logger, tail

if TYPE_CHECKING:  # rich is imported only on a terminal: it costs ~0.1 s of start-up
    from rich.console import Console, RenderableType
    from rich.live import Live

TAIL_LINES = 30
_WAITING = {"waiting", "starting", "started"}
_ENDED_BADLY = {"skipped", "failed", "not ready", "died"}


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
    duration_s: float | None = None  # kind = "task": how long it ran
    exit_code: int | None = None
    stop_s: float | None = None
    stopped: str | None = None
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    # When each status began (monotonic), when teardown reached it, when it failed:
    # the timeline of summary.json and report.html.
    events: list[tuple[float, str]] = field(default_factory=list)
    stop_began: float | None = None
    failed_at: float | None = None

    def as_json(self, began: float | None = None) -> dict[str, Any]:
        """What summary.json says; times on the timeline are seconds after `began`."""

        def at(moment: float | None) -> float | None:
            return None if moment is None or began is None else _round(moment - began)

        return {
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "url": redact(self.url),
            "status": self.status,
            "reason": self.detail if self.status in _ENDED_BADLY else None,
            "ready_after_s": _round(self.ready_after_s),
            "duration_s": _round(self.duration_s),
            "exit_code": self.exit_code,
            "stop_s": _round(self.stop_s),
            "stopped": self.stopped,
            "log": self.log,
            "timeline": [{"t": at(t), "status": status} for t, status in self.events],
            "stop_began_s": at(self.stop_began),
            "failed_at_s": at(self.failed_at),
        }


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Reporter:
    """Console output for one run, on stderr so COMMAND's stdout stays its own: rich
    spinners and a table on a terminal, plain lines elsewhere (CI, pipes)."""

    def __init__(
        self, stream: IO[str] | None = None, *, quiet: bool = False, fancy: bool | None = None
    ) -> None:
        # sys.stderr is None when conductor was started with stderr closed; the CLI
        # reopens it on /dev/null, a caller of the API may not have.
        self.stream: IO[str] | None = stream or sys.stderr
        self.fancy = _is_terminal(self.stream) if fancy is None else fancy
        self.quiet = quiet
        self.services: dict[str, ServiceReport] = {}
        self._console: Console | None = None
        self._live: Live | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    # progress -----------------------------------------------------------------
    def track(self, reports: Mapping[str, ServiceReport]) -> None:
        self.services = dict(reports)
        if self.fancy and not self.quiet:
            from rich.live import Live

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
                        f"✓ {report.name} {report.status} after {report.ready_after_s or 0:.2f}s"
                    )
                elif report.status == "completed":
                    self._line(f"✓ {report.name} completed in {report.duration_s or 0:.2f}s")

    def event(self, service: str, status: str, detail: str = "") -> None:
        report = self.services.get(service)
        if report is not None:
            report.status, report.detail, report.since = status, detail, time.monotonic()
            report.events.append((report.since, status))
        logger.info("%s: %s%s", service, status, f" ({detail})" if detail else "")
        if self._live is None:
            self._line(f"{service}: {status}" + (f" ({detail})" if detail else ""))

    def failure(self, service: str, reason: str, log_path: Path | None) -> None:
        """A service failed: say who and why, then the end of its log."""
        logger.error("%s %s", service, reason)
        report = self.services.get(service)
        if report is not None:
            report.failed_at, report.detail = time.monotonic(), reason
        end = tail(log_path, TAIL_LINES) if log_path else Tail([], cut=False)
        note = (
            f"… (tail cut at {TAIL_BYTES // 1024} KiB, {TAIL_LINE_BYTES // 1024} KiB a line; "
            f"whole log: {log_path})"
        )
        for line in end.lines:
            logger.error("%s| %s", service, line)
        if end.cut:
            logger.error("%s| %s", service, note)
        self._print(f"✗ service '{service}' {reason}", "bold red")
        if log_path is not None:
            count = len(end.lines)
            self._print(f"  last {'line' if count == 1 else f'{count} lines'} of {log_path}:")
            for line in end.lines:
                self._print(f"  {service} | {line}", "dim")
            if end.cut:
                self._print(f"  {note}", "dim")

    def warning(self, message: str) -> None:
        logger.warning("%s", message)
        self._print(f"conductor: warning: {message}", "yellow")

    def error(self, message: str) -> None:
        """A run-ending error such as bad configuration: one line, no traceback."""
        self._print(f"conductor: {message}", "bold red")

    def info(self, message: str) -> None:
        logger.info("%s", message)
        self._line(message)

    def log_lines(self, service: str, pieces: list[Piece]) -> None:
        """--show-logs: service lines, each after `NAME | `; a line too long to hold in
        memory comes in pieces, each further one after `NAME + `. One write per batch."""
        start, more = f"{service} | ", f"{service} + "
        lines = [
            (start if starts_line else more) + piece.decode("utf-8", "replace")
            for piece, starts_line in pieces
        ]
        if self.fancy:
            for line in lines:
                self._print(line)
        else:
            self._write("".join(line + "\n" for line in lines))

    def _line(self, message: str) -> None:
        if not self.quiet:
            self._print(f"conductor: {message}")

    def _print(self, message: str, style: str | None = None) -> None:
        message = masking.mask(message)
        if self.fancy:
            from rich.text import Text

            self._safely(
                lambda: self.console.print(Text(message, style=style or ""), soft_wrap=True)
            )
        else:
            self._write(message + "\n")

    def _write(self, text: str) -> None:
        def write() -> None:
            assert self.stream is not None
            self.stream.write(masking.mask(text))
            self.stream.flush()

        self._safely(write)

    def _safely(self, output: Callable[[], object]) -> None:
        """Console output that cannot end the run: a closed stream, or a pipe whose
        reader went away (EPIPE), silences the console; conductor.log, summary.json
        and the teardown go on."""
        if self.stream is None:
            return
        try:
            output()
        except (OSError, ValueError):
            self.stream = None

    # closing ------------------------------------------------------------------
    def table(self, report: Path | None = None) -> None:
        """The closing table, then the report.html that draws the same run."""
        self._table()
        if report is not None:
            self._print(f"conductor: timeline and log tails: {report}")

    def _table(self) -> None:
        rows = [("service", "ready after", "stopped", "log")]
        for report in self.services.values():
            ready = (
                f"{report.ready_after_s:.2f}s"
                if report.ready_after_s is not None
                else report.status
            )
            rows.append((report.name, ready, report.stopped or "-", report.log or "-"))
        if self.fancy:
            from rich.table import Table

            table = Table(title="conductor", title_justify="left", show_edge=False)
            for column in rows[0]:
                table.add_column(column)
            for row in rows[1:]:
                table.add_row(*row)
            self._safely(lambda: self.console.print(table))
            return
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[3]]).rstrip() + "\n")
        self._write("".join(lines))


class _Progress:
    """The live view: one row per service, a spinner while it is on its way."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.spinners: dict[str, Any] = {}

    def __rich__(self) -> RenderableType:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for report in self.reporter.services.values():
            icon: RenderableType
            if report.status in _WAITING:
                icon = self.spinners.setdefault(report.name, Spinner("dots"))
            else:
                ok = report.status in ("ready", "reused", "completed")
                icon = Text("✓" if ok else "•", style="green" if ok else "")
            elapsed = f"{now - report.since:5.1f}s" if report.status in _WAITING else ""
            table.add_row(
                icon,
                Text(report.name, style="bold"),
                Text(report.status),
                Text(elapsed, style="dim"),
                Text(masking.mask(report.detail), style="dim"),
            )
        return table


def redact(url: str | None) -> str | None:
    """The URL without its password: summary.json and `check` end up in CI artifacts."""
    return None if url is None else masking.mask(url)


def write_summary(
    path: Path,
    *,
    exit_code: int,
    command: list[str] | None,
    durations: Mapping[str, float | None],
    services: Mapping[str, ServiceReport],
    run_id: str | None = None,
    began: float | None = None,
    phases: Mapping[str, tuple[float | None, float | None]] | None = None,
    action: str = "run",
) -> None:
    """summary.json, and report.html beside it drawn from the very same data.

    `phases` are spans of the run (COMMAND, teardown) as monotonic (start, end) pairs,
    put on the timeline as seconds after `began`."""

    def at(moment: float | None) -> float | None:
        return None if moment is None or began is None else _round(moment - began)

    data = {
        "run_id": run_id,
        "action": action,
        "exit_code": exit_code,
        "command": command,
        "durations": {k: _round(v) for k, v in durations.items()},
        "phases": {k: [at(a), at(b)] for k, (a, b) in (phases or {}).items()},
        "services": {name: report.as_json(began) for name, report in services.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    data = typing.cast(dict[str, Any], masking.mask_data(data))
    files.replace(path, json.dumps(data, indent=2) + "\n")
    from conductor import htmlreport  # only now: a run that never ends never needs it

    htmlreport.write(path.parent, data)
