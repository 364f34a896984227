"""report.html: one run drawn as a timeline, beside summary.json and from the same data.

Where the time went (which service was slow to be ready, what waited on what, when
COMMAND ran, how long teardown took) is easier to see than to read. The file is
self-contained (inline CSS and SVG, no script, no network), so it opens from disk, from
a CI artifact, or from an e-mail attachment alike.

It is drawn from the run's Summary (summary.py) and from nothing else: where a lane
ends and how it is coloured come from each service's `outcome`, `ended_at_s` and
`failed_at_s`, never from the sentence in `stopped`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from conductor.files import safe_io
from conductor.files.logs import REPORT_FILES, tail
from conductor.report.console import Outcome
from conductor.report.summary import Phase, ServiceSummary, Summary

TAIL_LINES = 20
TAIL_LINE_CHARS = 400
WIDTH = 960  # the SVG's drawing width in px; lanes scale the run's seconds onto it
LABEL = 150  # px left of the lanes for their names
LANE = 26
# What each phase of a service looks like on its lane.
PHASE_COLOR = {
    "waiting": "#d0d5dd",
    "starting": "#f5c451",
    "started": "#f5c451",
    "ready": "#4caf7a",
    "reused": "#7aa7e0",
    "completed": "#1a9bb0",  # a kind = "task" that exited 0: finished, not running
    "stopping": "#8d99ae",
}
# How a lane's end is coloured: by how the service ended.
Look = Literal["clean", "killed", "failed", "skipped"]
OUTCOME_COLOR: dict[Look, str] = {
    "clean": "#2e7d4f",
    "killed": "#e07b00",  # by conductor's SIGKILL, or by a signal it did not send
    "failed": "#c62828",
    "skipped": "#9e9e9e",
}
# The "ended" column, said from the outcome (summary.json's `stopped` is not read).
ENDED: dict[Outcome, str] = {
    "stopped": "stopped by conductor",
    "forced": "killed by conductor (SIGKILL)",
    "exited": "exited by itself",
    "signalled": "killed by a signal conductor did not send",
    "completed": "completed",
    "skipped": "skipped",
    "not started": "not started by conductor",
}


def write(logs_dir: Path, summary: Summary) -> Path:
    """Write report.html into `logs_dir` (atomically, like summary.json)."""
    path = logs_dir / REPORT_FILES[1]
    safe_io.replace(path, render(logs_dir, summary))
    return path


def render(logs_dir: Path, summary: Summary) -> str:
    services = summary.services
    total = max(summary.durations.total_s, 0.001)
    exit_code = summary.exit_code
    action = summary.action
    command = summary.command
    title = f"conductor {action}: exit {exit_code}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1 class="{"ok" if exit_code == 0 else "bad"}">{_e(title)}</h1>',
        '<p class="meta">',
        f"command: <code>{_e(' '.join(command) if command else '(none: conductor up)')}</code>"
        f" · total {total:.2f}s · run <code>{_e(summary.run_id)}</code></p>",
        _timeline(services, summary.phases, total, exit_code),
        _legend(),
        _table(logs_dir, services),
        _tails(logs_dir, services),
        _artifacts(logs_dir),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _timeline(
    services: Mapping[str, ServiceSummary],
    phases: Mapping[Phase, tuple[float, float]],
    total: float,
    exit_code: int,
) -> str:
    lanes: list[str] = []
    scale = (WIDTH - LABEL - 10) / total

    def x(t: float | None) -> float:
        return LABEL + max(0.0, min(float(t or 0.0), total)) * scale

    row = 0
    for name, svc in services.items():
        y = 24 + row * LANE
        row += 1
        look = _look(svc)
        lane = [
            f'<g class="lane service {look}" data-service="{_e(name)}">',
            f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{_e(name)}</text>',
        ]
        for start, end, phase in _spans(svc, total):
            lane.append(
                f'<rect class="phase {phase}" x="{x(start):.1f}" y="{y + 3}" '
                f'width="{max(x(end) - x(start), 1.0):.1f}" height="{LANE - 8}" '
                f'fill="{PHASE_COLOR.get(phase, "#ccc")}">'
                f"<title>{_e(name)}: {_e(phase)} {start:.2f}s → {end:.2f}s</title></rect>"
            )
        if look == "skipped":
            lane.append(
                f'<text class="skipped" x="{LABEL + 4}" y="{y + 15}">skipped: '
                f"{_e(svc.reason or '')}</text>"
            )
        else:
            end = _end_of(svc, total)
            # A task that completed ends in the colour of its kind of success.
            done = svc.outcome == "completed"
            fill = PHASE_COLOR["completed"] if done else OUTCOME_COLOR[look]
            lane.append(
                f'<rect class="end{" completed" if done else ""}" x="{x(end) - 3:.1f}" '
                f'y="{y + 1}" width="4" height="{LANE - 4}" fill="{fill}">'
                f"<title>{_e(name)}: {_e(_ended(svc))}{_status(svc)}</title></rect>"
            )
        failed_at = svc.failed_at_s
        if failed_at is not None:
            fx = x(failed_at)
            lane.append(
                f'<g class="failure-mark"><title>{_e(name)} failed at {failed_at:.2f}s: '
                f"{_e(svc.reason or '')}</title>"
                f'<circle cx="{fx:.1f}" cy="{y + LANE / 2 - 1}" r="8" fill="#c62828"/>'
                f'<text x="{fx:.1f}" y="{y + LANE / 2 + 3}" text-anchor="middle" '
                f'class="cross">✕</text></g>'
            )
        lane.append("</g>")
        lanes.append("".join(lane))
    lanes_of_run: tuple[tuple[Phase, str], ...] = (("command", "COMMAND"), ("teardown", "teardown"))
    for key, label in lanes_of_run:
        span = phases.get(key)
        y = 24 + row * LANE
        row += 1
        lane = [
            f'<g class="lane {key}">',
            f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{label}</text>',
        ]
        if span is not None:
            ok = key == "teardown" or exit_code == 0
            color = "#5c6bc0" if key == "teardown" else ("#4caf7a" if ok else "#c62828")
            status = "" if key == "teardown" else f", exit {exit_code}"
            lane.append(
                f'<rect class="phase {key}" x="{x(span[0]):.1f}" y="{y + 3}" '
                f'width="{max(x(span[1]) - x(span[0]), 1.0):.1f}" height="{LANE - 8}" '
                f'fill="{color}"><title>{label}: {span[0]:.2f}s → {span[1]:.2f}s{status}'
                "</title></rect>"
            )
        lane.append("</g>")
        lanes.append("".join(lane))
    height = 24 + row * LANE + 24
    axis = [f'<line x1="{LABEL}" y1="{height - 20}" x2="{WIDTH - 10}" y2="{height - 20}"/>']
    step = _tick_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        axis.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{height - 6}" text-anchor="middle">'
            f"{tick:g}s</text>"
            f'<line class="grid" x1="{x(tick):.1f}" y1="18" x2="{x(tick):.1f}" '
            f'y2="{height - 20}"/>'
        )
        tick += step
    return (
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="timeline of the run">{"".join(axis)}{"".join(lanes)}</svg>'
    )


def _spans(svc: ServiceSummary, total: float) -> list[tuple[float, float, str]]:
    """(start, end, phase) pieces of a service's lane, from its status changes. The lane
    ends when the process did: a task that completed or a service that exited or was
    killed by a signal of its own is drawn no further, though the run (and its
    teardown) went on; one conductor stopped ends in "stopping"."""
    end_of_life = _end_of(svc, total)
    stop_began = svc.stop_began_s if svc.outcome in ("stopped", "forced") else None
    cut = stop_began if stop_began is not None else end_of_life
    spans: list[tuple[float, float, str]] = []
    for i, event in enumerate(svc.timeline):
        nxt = svc.timeline[i + 1].t if i + 1 < len(svc.timeline) else cut
        nxt = min(nxt, cut)
        if nxt > event.t:
            phase = event.status if event.status in PHASE_COLOR else "started"
            spans.append((event.t, nxt, phase))
    if stop_began is not None:
        spans.append((stop_began, end_of_life, "stopping"))
    return spans


def _end_of(svc: ServiceSummary, total: float) -> float:
    """When its process was seen to end; a failure without one (it was never spawned,
    or another's process held its port), or the end of the run (reused)."""
    if svc.ended_at_s is not None:
        return svc.ended_at_s
    if svc.failed_at_s is not None:
        return svc.failed_at_s
    return total


def _look(svc: ServiceSummary) -> Look:
    if svc.status == "skipped":
        return "skipped"
    if svc.status in ("failed", "not ready") or svc.failed_at_s is not None:
        return "failed"
    if svc.outcome in ("forced", "signalled"):
        return "killed"
    return "clean"


def _ended(svc: ServiceSummary) -> str:
    how = ENDED[svc.outcome]
    if svc.signal is not None:
        how += f" ({svc.signal})"
    if svc.stop_s is not None and svc.outcome in ("stopped", "forced"):
        how += f" in {svc.stop_s:.2f}s"
    return how


def _legend() -> str:
    items = [f'<span style="background:{c}"></span>{p}' for p, c in PHASE_COLOR.items()]
    items += [f'<span style="background:{c}"></span>ended: {o}' for o, c in OUTCOME_COLOR.items()]
    return '<p class="legend">' + " ".join(f"<i>{i}</i>" for i in items) + "</p>"


def _status(svc: ServiceSummary) -> str:
    return "" if svc.exit_code is None else f", exit status {svc.exit_code}"


def _table(logs_dir: Path, services: Mapping[str, ServiceSummary]) -> str:
    rows = [
        "<table><thead><tr><th>service</th><th>status</th><th>ready after</th>"
        "<th>ended</th><th>exit status</th><th>log</th></tr></thead><tbody>"
    ]
    for name, svc in services.items():
        ready = svc.ready_after_s
        status = _e(svc.status) + (
            f'<div class="reason">{_e(svc.reason)}</div>' if svc.reason else ""
        )
        code = "-" if svc.exit_code is None else str(svc.exit_code)
        rows.append(
            f'<tr class="{_look(svc)}" data-outcome="{_e(svc.outcome)}"><td>{_e(name)}</td>'
            f"<td>{status}</td><td>{'-' if ready is None else f'{ready:.2f}s'}</td>"
            f"<td>{_e(_ended(svc))}</td><td>{code}</td><td>{_link(logs_dir, svc.log)}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _tails(logs_dir: Path, services: Mapping[str, ServiceSummary]) -> str:
    out = ["<h2>Last lines of each log</h2>"]
    for name, svc in services.items():
        log = svc.log
        if not log:
            continue
        lines = [
            line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " … (cut)"
            for line in tail(Path(log), TAIL_LINES).lines
        ]
        bad = _look(svc) == "failed"
        out.append(
            f'<details class="tail" data-service="{_e(name)}"{" open" if bad else ""}>'
            f"<summary>{_e(name)} ({len(lines)} line{'' if len(lines) == 1 else 's'}, "
            f"{_link(logs_dir, log)})</summary>"
            f"<pre>{_e(chr(10).join(lines)) or '(empty)'}</pre></details>"
        )
    return "".join(out)


def _artifacts(logs_dir: Path) -> str:
    """Links to the browser traces and screenshots a test suite left in the folder."""
    found = sorted(
        p
        for pattern in ("*.zip", "*.png", "*.webm")
        for p in (logs_dir / "browser").rglob(pattern)
        if p.is_file()
    )
    if not found:
        return ""
    items = "".join(f"<li>{_link(logs_dir, str(p))}</li>" for p in found)
    return (
        "<h2>Browser artifacts</h2><p>Open a trace with <code>playwright show-trace "
        f"FILE</code>.</p><ul>{items}</ul>"
    )


def _link(logs_dir: Path, target: object) -> str:
    if not target:
        return "-"
    path = Path(str(target))
    try:
        rel = os.path.relpath(path, logs_dir)
    except ValueError:  # another drive (Windows)
        rel = str(path)
    return f'<a href="{_e(quote(Path(rel).as_posix()))}">{_e(rel)}</a>'


def _tick_step(total: float) -> float:
    for step in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if total / step <= 12:
            return float(step)
    return total / 10


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2433;max-width:1000px}
h1{font-size:20px;margin:0 0 4px}h1.ok{color:#2e7d4f}h1.bad{color:#c62828}
h2{font-size:16px;margin:24px 0 8px}.meta{color:#555;margin:0 0 12px}
code{background:#f2f4f7;padding:1px 4px;border-radius:3px}
svg.timeline{background:#fafbfc;border:1px solid #e4e7ec;border-radius:6px}
svg text{font:12px system-ui,sans-serif;fill:#1d2433}svg text.tick{fill:#667085;font-size:11px}
svg text.skipped{fill:#667085;font-style:italic}svg text.cross{fill:#fff;font-size:11px}
svg line{stroke:#98a2b3}svg line.grid{stroke:#eaecf0}
.legend i{font-style:normal;margin-right:12px;color:#555;font-size:12px}
.legend span{display:inline-block;width:12px;height:12px;margin-right:4px;
vertical-align:-2px;border-radius:2px}
table{border-collapse:collapse;margin-top:12px;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaecf0;vertical-align:top}
tr.failed td:first-child{border-left:4px solid #c62828}
tr.killed td:first-child{border-left:4px solid #e07b00}
tr.skipped td{color:#667085}.reason{color:#c62828;font-size:12px}
details.tail{margin:6px 0}summary{cursor:pointer}
pre{background:#101828;color:#e4e7ec;padding:8px;overflow:auto;max-height:320px;
font-size:12px;white-space:pre-wrap;word-break:break-all}
"""
