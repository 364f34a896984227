"""summary.json, the record of one run, and the report.html drawn from it: one shape
(these Structs) and one writer, for `run`, `up` and the pytest plugin alike.

The writer takes the stack and the run's spans and nothing else, so the three agree by
construction on when the run began (the stack's start: the clock `ready_after_s` and
the timeline share), on the phases, and on what each service's fields mean. report.html
is rendered from the Summary as summary.json holds it, never from prose in it.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

from conductor.files import masking, safe_io
from conductor.files.logs import REPORT_FILES
from conductor.report.console import ENDED_BADLY, Outcome, Reporter, ServiceReport, Status, redact

if TYPE_CHECKING:
    from conductor.stack import Stack

Action = Literal["run", "up", "pytest"]
SUMMARY_FILE, PAGE_FILE = REPORT_FILES  # named once, with conductor.log (files/logs.py)
Phase = Literal["command", "teardown"]


class Event(msgspec.Struct, frozen=True):
    """A status a service reached, `t` seconds after the run began."""

    t: float
    status: Status


class ServiceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One service, as summary.json's `services.NAME` says it (the README lists it)."""

    pid: int | None = None
    image: str | None = None  # kind = "container": its image and the container's id
    container: str | None = None
    engine: str | None = None  # the engine that ran it: "podman" or "docker"
    host: str | None = None
    port: int | None = None
    url: str | None = None
    status: Status = "not started"
    outcome: Outcome = "not started"
    reason: str | None = None
    ready_after_s: float | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    stop_s: float | None = None
    stopped: str | None = None
    log: str | None = None
    timeline: list[Event] = msgspec.field(default_factory=list)
    stop_began_s: float | None = None
    failed_at_s: float | None = None
    ended_at_s: float | None = None


class Durations(msgspec.Struct, frozen=True, omit_defaults=True):
    startup_s: float
    command_s: float | None
    teardown_s: float
    total_s: float
    tests_s: float | None = None  # the pytest plugin's name for command_s (kept: README)


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    action: Action
    exit_code: int
    command: list[str] | None
    durations: Durations
    # spans of the run as [start, end], seconds after it began; no "command" when
    # COMMAND (or the plugin's tests) never ran
    phases: dict[Phase, tuple[float, float]]
    services: dict[str, ServiceSummary]
    # --keep-logs: the folder in runs/ this run's files are kept in; null when not kept
    kept_in: str | None = None


def _round(value: float) -> float:
    return round(value, 4)


def _maybe(value: float | None) -> float | None:
    return None if value is None else _round(value)


def service(report: ServiceReport, began: float) -> ServiceSummary:
    """One service's record; its moments become seconds after `began`."""

    def at(moment: float | None) -> float | None:
        return None if moment is None else _round(moment - began)

    return ServiceSummary(
        pid=report.pid,
        image=report.image,
        container=report.container,
        engine=report.engine,
        host=report.host,
        port=report.port,
        url=redact(report.url),
        status=report.status,
        outcome=report.outcome,
        reason=report.detail if report.status in ENDED_BADLY else None,
        ready_after_s=_maybe(report.ready_after_s),
        duration_s=_maybe(report.duration_s),
        exit_code=report.exit_code,
        signal=report.signal,
        stop_s=_maybe(report.stop_s),
        stopped=report.stopped,
        log=report.log,
        timeline=[Event(_round(t - began), status) for t, status in report.events],
        stop_began_s=at(report.stop_began),
        failed_at_s=at(report.failed_at),
        ended_at_s=at(report.ended),
    )


def summarize(
    stack: Stack,
    *,
    action: Action,
    exit_code: int,
    command: list[str] | None,
    command_span: tuple[float, float] | None,
    torn: float,
    ended: float,
) -> Summary:
    """The run's record: `command_span` is when COMMAND (the plugin: the tests) ran,
    `torn` when teardown began and `ended` when it was over (monotonic)."""
    began = stack.started_at
    # A failed start stops the stack before the run's own teardown begins.
    torn = min([torn, *(r.stop_began for r in stack.reports.values() if r.stop_began)])
    phases: dict[Phase, tuple[float, float]] = {
        "teardown": (_round(torn - began), _round(ended - began))
    }
    command_s = None
    if command_span is not None:
        start, end = command_span
        phases["command"] = (_round(start - began), _round(end - began))
        command_s = _round(end - start)
    return Summary(
        run_id=stack.run_id,
        action=action,
        exit_code=exit_code,
        command=command,
        durations=Durations(
            startup_s=_round((stack.ready_at or torn) - began),
            command_s=command_s,
            teardown_s=_round(ended - torn),
            total_s=_round(ended - began),
            tests_s=command_s if action == "pytest" else None,
        ),
        phases=phases,
        services={name: service(report, began) for name, report in stack.reports.items()},
        kept_in=None if stack.kept is None else str(stack.kept),
    )


def write(logs_dir: Path, summary: Summary, reporter: Reporter, *, table: bool = True) -> None:
    """summary.json and report.html in the run's logs folder, then the closing table
    (with `table`). A run that never got as far as a plan (bad configuration, a busy
    folder) has none (the Stack does not call this); a folder gone or full is a
    warning, never a changed exit status."""
    path = logs_dir / SUMMARY_FILE
    try:
        save(logs_dir, summary)
    except OSError as exc:
        reporter.warning(f"could not write {path}: {exc.strerror or exc}")
    if table:
        reporter.table(path.with_name(PAGE_FILE))


def preload() -> None:
    """Import report.html's drawer ahead of the end of the run (Preload's thread, after
    the first spawn): save() needs it once COMMAND is over, when the caller waits."""
    from conductor.report import html_page  # noqa: F401  (lands in sys.modules)


def save(logs_dir: Path, summary: Summary) -> None:
    """summary.json, then report.html drawn from the very data it holds (masked)."""
    record = to_builtins(summary)
    logs_dir.mkdir(parents=True, exist_ok=True)
    safe_io.replace(logs_dir / SUMMARY_FILE, json.dumps(record, indent=2) + "\n")
    from conductor.report import html_page  # only now: a run that never ends never needs it

    html_page.write(logs_dir, msgspec.convert(record, Summary))


def to_builtins(summary: Summary) -> dict[str, typing.Any]:
    """summary.json's data (dicts and lists, for json). Its data is masked where it is
    data: COMMAND's words here; each url (`redact`) and reason (where it was written)
    when the Summary was made. Its words - statuses, outcomes, paths - are left whole,
    so that report.html, drawn from them, draws (a password such as `rect` or
    `completed` must not eat them)."""
    if summary.command is not None:
        summary = msgspec.structs.replace(
            summary, command=[masking.mask(word) for word in summary.command]
        )
    return typing.cast(dict[str, typing.Any], msgspec.to_builtins(summary))
