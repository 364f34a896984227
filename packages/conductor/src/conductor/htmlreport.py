"""report.html: one run drawn as a timeline, beside summary.json and from the same data.

Where the time went (which service was slow to be ready, what waited on what, when
COMMAND ran, how long teardown took) is easier to see than to read. The file is
self-contained (inline CSS and SVG, no script, no network), so it opens from disk, from
a CI artifact, or from an e-mail attachment alike.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conductor import files, masking
from conductor.logs import tail

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
OUTCOME_COLOR = {"clean": "#2e7d4f", "killed": "#e07b00", "failed": "#c62828", "skipped": "#9e9e9e"}


def write(logs_dir: Path, summary: Mapping[str, Any]) -> Path:
    """Write report.html into `logs_dir` (atomically, like summary.json)."""
    path = logs_dir / "report.html"
    files.replace(path, masking.mask(render(logs_dir, summary)))
    return path


def render(logs_dir: Path, summary: Mapping[str, Any]) -> str:
    services: Mapping[str, Mapping[str, Any]] = summary.get("services") or {}
    durations: Mapping[str, float | None] = summary.get("durations") or {}
    total = max(float(durations.get("total_s") or 0.0), 0.001)
    exit_code = summary.get("exit_code")
    action = str(summary.get("action") or "run")
    command = summary.get("command")
    title = f"conductor {action}: exit {exit_code}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1 class="{"ok" if exit_code == 0 else "bad"}">{_e(title)}</h1>',
        '<p class="meta">',
        f"command: <code>{_e(' '.join(command) if command else '(none: conductor up)')}</code>"
        f" · total {total:.2f}s · run <code>{_e(str(summary.get('run_id')))}</code></p>",
        _timeline(services, summary.get("phases") or {}, total, exit_code),
        _legend(),
        _table(logs_dir, services),
        _tails(logs_dir, services),
        _artifacts(logs_dir),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _timeline(
    services: Mapping[str, Mapping[str, Any]],
    phases: Mapping[str, Any],
    total: float,
    exit_code: object,
) -> str:
    lanes: list[str] = []
    scale = (WIDTH - LABEL - 10) / total

    def x(t: float | None) -> float:
        return LABEL + max(0.0, min(float(t or 0.0), total)) * scale

    row = 0
    for name, svc in services.items():
        y = 24 + row * LANE
        row += 1
        outcome = _outcome(svc)
        lane = [
            f'<g class="lane service {outcome}" data-service="{_e(name)}">',
            f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{_e(name)}</text>',
        ]
        for start, end, phase in _spans(svc, total):
            lane.append(
                f'<rect class="phase {phase}" x="{x(start):.1f}" y="{y + 3}" '
                f'width="{max(x(end) - x(start), 1.0):.1f}" height="{LANE - 8}" '
                f'fill="{PHASE_COLOR.get(phase, "#ccc")}">'
                f"<title>{_e(name)}: {_e(phase)} {start:.2f}s → {end:.2f}s</title></rect>"
            )
        if outcome == "skipped":
            lane.append(
                f'<text class="skipped" x="{LABEL + 4}" y="{y + 15}">skipped: '
                f"{_e(str(svc.get('reason') or ''))}</text>"
            )
        else:
            end = _end_of(svc, total)
            # A task that completed ends in the colour of its kind of success.
            done = svc.get("status") == "completed"
            fill = PHASE_COLOR["completed"] if done else OUTCOME_COLOR[outcome]
            lane.append(
                f'<rect class="end{" completed" if done else ""}" x="{x(end) - 3:.1f}" '
                f'y="{y + 1}" width="4" height="{LANE - 4}" fill="{fill}">'
                f"<title>{_e(name)}: {_e(_ended(svc))}</title></rect>"
            )
        failed_at = svc.get("failed_at_s")
        if failed_at is not None:
            fx = x(failed_at)
            lane.append(
                f'<g class="failure-mark"><title>{_e(name)} failed at {failed_at:.2f}s: '
                f"{_e(str(svc.get('reason') or ''))}</title>"
                f'<circle cx="{fx:.1f}" cy="{y + LANE / 2 - 1}" r="8" fill="#c62828"/>'
                f'<text x="{fx:.1f}" y="{y + LANE / 2 + 3}" text-anchor="middle" '
                f'class="cross">✕</text></g>'
            )
        lane.append("</g>")
        lanes.append("".join(lane))
    for key, label in (("command", "COMMAND"), ("teardown", "teardown")):
        span = phases.get(key)
        y = 24 + row * LANE
        row += 1
        lane = [
            f'<g class="lane {key}">',
            f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{label}</text>',
        ]
        if span and span[0] is not None and span[1] is not None:
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


def _spans(svc: Mapping[str, Any], total: float) -> list[tuple[float, float, str]]:
    """(start, end, phase) pieces of a service's lane, from its status changes. The lane
    ends when the process did: a task that completed or a service that died is drawn
    no further, though the run (and its teardown) went on."""
    events = [
        (float(e["t"]), str(e["status"]))
        for e in svc.get("timeline") or []
        if isinstance(e, Mapping) and e.get("t") is not None
    ]
    gone = _gone_at(svc)
    stop_began = None if gone is not None else svc.get("stop_began_s")
    end_of_life = _end_of(svc, total)
    spans: list[tuple[float, float, str]] = []
    for i, (t, status) in enumerate(events):
        nxt = events[i + 1][0] if i + 1 < len(events) else (stop_began or end_of_life)
        nxt = min(nxt, stop_began if stop_began is not None else end_of_life)
        if nxt > t:
            spans.append((t, nxt, status if status in PHASE_COLOR else "started"))
    if stop_began is not None:
        spans.append((stop_began, end_of_life, "stopping"))
    return spans


def _gone_at(svc: Mapping[str, Any]) -> float | None:
    """When the process ended by itself (a task that completed, a service that exited
    or died), if it did; None when conductor stopped it."""
    timeline = [e for e in svc.get("timeline") or [] if isinstance(e, Mapping)]
    if svc.get("status") == "completed":
        done = [
            e["t"] for e in timeline if e.get("status") == "completed" and e.get("t") is not None
        ]
        if done:
            return float(done[-1])
    if (
        str(svc.get("stopped") or "").startswith("had exited")
        and svc.get("failed_at_s") is not None
    ):
        return float(svc["failed_at_s"])
    return None


def _end_of(svc: Mapping[str, Any], total: float) -> float:
    gone = _gone_at(svc)
    if gone is not None:
        return gone
    stop_began, stop_s = svc.get("stop_began_s"), svc.get("stop_s")
    if stop_began is not None:
        return float(stop_began) + float(stop_s or 0.0)
    if svc.get("failed_at_s") is not None:
        return float(svc["failed_at_s"])
    return total


def _outcome(svc: Mapping[str, Any]) -> str:
    status = svc.get("status")
    if status == "skipped":
        return "skipped"
    if status in ("failed", "not ready") or svc.get("failed_at_s") is not None:
        return "failed"
    stopped = str(svc.get("stopped") or "")
    if "killed" in stopped or "SIGKILL" in stopped:
        return "killed"
    return "clean"


def _ended(svc: Mapping[str, Any]) -> str:
    how = svc.get("stopped") or svc.get("status") or "?"
    code = svc.get("exit_code")
    return f"{how}" + (f", exit status {code}" if code is not None else "")


def _legend() -> str:
    items = [f'<span style="background:{c}"></span>{p}' for p, c in PHASE_COLOR.items()]
    items += [f'<span style="background:{c}"></span>ended: {o}' for o, c in OUTCOME_COLOR.items()]
    return '<p class="legend">' + " ".join(f"<i>{i}</i>" for i in items) + "</p>"


def _table(logs_dir: Path, services: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        "<table><thead><tr><th>service</th><th>status</th><th>ready after</th>"
        "<th>ended</th><th>exit status</th><th>log</th></tr></thead><tbody>"
    ]
    for name, svc in services.items():
        ready = svc.get("ready_after_s")
        reason = svc.get("reason")
        status = _e(str(svc.get("status"))) + (
            f'<div class="reason">{_e(str(reason))}</div>' if reason else ""
        )
        rows.append(
            f'<tr class="{_outcome(svc)}"><td>{_e(name)}</td><td>{status}</td>'
            f"<td>{'-' if ready is None else f'{ready:.2f}s'}</td>"
            f"<td>{_e(str(svc.get('stopped') or '-'))}</td>"
            f"<td>{_e(str(svc.get('exit_code') if svc.get('exit_code') is not None else '-'))}"
            f"</td><td>{_link(logs_dir, svc.get('log'))}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _tails(logs_dir: Path, services: Mapping[str, Mapping[str, Any]]) -> str:
    out = ["<h2>Last lines of each log</h2>"]
    for name, svc in services.items():
        log = svc.get("log")
        if not log:
            continue
        lines = [
            line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " … (cut)"
            for line in tail(Path(log), TAIL_LINES).lines
        ]
        bad = _outcome(svc) == "failed"
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
