"""What people are told: live progress, failures with their log tail, and the closing
table; and the live record of each service (ServiceReport) that summary.json is made of.

On a terminal, progress is a spinner per service with its elapsed time; elsewhere (CI)
it is one plain line per event. Every event also goes to conductor.log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from conductor.files import masking
from conductor.files.logs import TAIL_BYTES, TAIL_LINE_BYTES, Piece, Tail, logger, tail
from conductor.process.start_stop import Ending, StopResult

if TYPE_CHECKING:  # rich is imported only on a terminal: it costs ~0.1 s of start-up
    from rich.console import Console, RenderableType
    from rich.live import Live

TAIL_LINES = 30

# Where a service is in its life: every writer (Stack, through Reporter.event) and every
# reader (the console, summary.json, report.html) uses these words and no others.
Status = Literal[
    "not started",  # never spawned (a dependency failed first, or Ctrl-C)
    "waiting",  # for its dependencies to be ready
    "starting",  # initdb, spawn
    "started",  # spawned, its readiness probe not yet passed
    "ready",
    "reused",  # reuse_existing: something already answered on its port
    "completed",  # a kind = "task" that exited 0
    "failed",  # exited, timed out or printed a fail.log line, before or after ready
    "not ready",  # spawned, then stopped when another service failed (or Ctrl-C)
    "skipped",  # optional, and its program is not installed here
]
# How a service's life ended (summary.json's `outcome`): how its process ended, or
# that it completed (a task), was skipped, or was never started by conductor.
Outcome = Literal[Ending, "completed", "skipped", "not started"]
WAITING: frozenset[Status] = frozenset({"waiting", "starting", "started"})
ENDED_BADLY: frozenset[Status] = frozenset({"skipped", "failed", "not ready"})


@dataclass
class ServiceReport:
    """Everything summary.json and the closing table say about one service, filled in
    as it happens (times are monotonic)."""

    name: str
    host: str | None = None
    port: int | None = None
    url: str | None = None
    log: str | None = None
    pid: int | None = None
    image: str | None = None  # kind = "container": its image, and its id once it runs
    container: str | None = None
    engine: str | None = None  # and the engine that runs it: "podman" or "docker"
    status: Status = "not started"
    ready_after_s: float | None = None
    duration_s: float | None = None  # kind = "task": how long it ran
    exit_code: int | None = None
    signal: str | None = None  # the signal its process died by, if one did
    ending: Ending | None = None  # None until conductor has stopped (or reaped) it
    stop_s: float | None = None
    stopped: str | None = None  # how it ended, for people: nothing reads it back
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    # When each status began, when teardown reached it, when it failed, when its process
    # was seen to end: the timeline of summary.json and report.html.
    events: list[tuple[float, Status]] = field(default_factory=list)
    stop_began: float | None = None
    failed_at: float | None = None
    ended: float | None = None

    @property
    def outcome(self) -> Outcome:
        if self.status == "completed":
            return "completed"
        if self.ending is not None:
            return self.ending
        return "skipped" if self.status == "skipped" else "not started"

    def record_stop(self, result: StopResult) -> None:
        """What stopping it found: how it ended, and when (if it did not end before)."""
        self.stop_s, self.stopped, self.ending = result.seconds, result.how, result.ending
        self.exit_code, self.signal = result.exit_code, result.signal
        if self.ended is None:
            self.ended = time.monotonic()


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


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

    def event(self, service: str, status: Status, detail: str = "") -> None:
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
            # A fatal line's failure is said once its service has finished saying why;
            # it failed when it printed the line.
            report.failed_at = report.failed_at or time.monotonic()
            report.detail = reason
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
            (start if starts_line else more) + masking.mask_bytes(piece).decode("utf-8", "replace")
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
            self.stream.write(text)
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
            if report.status in WAITING:
                icon = self.spinners.setdefault(report.name, Spinner("dots"))
            else:
                ok = report.status in ("ready", "reused", "completed")
                icon = Text("✓" if ok else "•", style="green" if ok else "")
            elapsed = f"{now - report.since:5.1f}s" if report.status in WAITING else ""
            table.add_row(
                icon,
                Text(report.name, style="bold"),
                Text(report.status),
                Text(elapsed, style="dim"),
                Text(report.detail, style="dim"),
            )
        return table


def redact(url: str | None) -> str | None:
    """The URL without its password: summary.json and `check` end up in CI artifacts."""
    return None if url is None else masking.mask_url(url)
