"""The README's commands on a bare machine: a fresh clone, with Chromium, redis-server and
PostgreSQL's server binaries absent (tools/absent.py hides them for real).

    python3 -m tools.bare            (nox -s bare runs it; .ci/run through nox -t full)

A fully equipped machine proves nothing about a new user's first command, so this
runs, in a clone of HEAD:
- the README's main command, `nox -s e2e`: the browser tests skip, the backend caches
  in process (no cache service) and keeps its data in SQLite (no db service);
- the second command's degraded path, `nox -s db auth api`: the database suites on
  SQLite and the api suite's backend without redis.

Then it reads what the runs left, as data: pytest's JUnit reports and conductor's
summary.json. It fails when a session failed (a test that needed a missing program and
did not skip), when a skip does not name the missing program and how to install it
("not installed: WHAT (HOW)", tests/optional.py), or when a service that needs a
hidden program was not skipped (then nothing was really absent).

Exit status: 0 passed; 1 a check failed; 3 the programs cannot be hidden here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools import absent

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = ("chromium", "redis-server", "postgres")
MISSING = "not installed: "


@dataclass(frozen=True)
class Stage:
    """One nox session run bare, and the services its stack must have skipped."""

    session: str
    skipped_services: tuple[str, ...]
    # a skip naming this must occur (the tests that need the program exist and skipped)
    must_skip_for: str | None = None


STAGES = (
    Stage("e2e", ("db", "cache"), must_skip_for="Chromium"),  # the README's main command
    Stage("db", ("db",)),
    Stage("auth", ("db",)),
    Stage("api", ("db", "cache"), must_skip_for="redis-server"),
)
# Skips that are not about a missing program, each with why it is right on a bare machine.
ALLOWED_SKIPS = {
    "a SQLite run keeps its databases in a temporary folder of its own": "no shared server",
}


def skips(report: Path) -> list[tuple[str, str]]:
    """(test id, reason) of each skipped test in a JUnit report."""
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for skipped in case.iter("skipped"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            found.append((test, skipped.get("message", "")))
    return found


def ran(report: Path) -> int:
    """How many tests in a JUnit report ran (were not skipped)."""
    cases = ET.parse(report).getroot().iter("testcase")
    return sum(1 for case in cases if case.find("skipped") is None)


def skip_problems(reasons: Iterable[tuple[str, str]]) -> list[str]:
    """Skips that name neither a missing program with its install hint nor an allowed
    reason (a JUnit report's skip message is the reason itself)."""
    problems = []
    for test, reason in reasons:
        if reason.startswith(MISSING) and "(" in reason:
            continue
        if reason in ALLOWED_SKIPS:
            continue
        problems.append(f"{test} skipped without naming a missing program: {reason!r}")
    return problems


def service_problems(summary: Path, must_skip: Iterable[str]) -> list[str]:
    """Services that should have been skipped (their program is absent) but were not."""
    try:
        services = json.loads(summary.read_text())["services"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{summary}: no services to read ({exc})"]
    if not isinstance(services, dict) or not all(isinstance(s, dict) for s in services.values()):
        return [f"{summary}: 'services' is not a table of services, one table each"]
    return [
        f"{summary}: service {name} ran ({services.get(name, {}).get('status')}), "
        "though its program is hidden"
        for name in must_skip
        if services.get(name, {}).get("status") != "skipped"
    ]


def check_stage(stage: Stage, clone: Path, report: Path) -> list[str]:
    """What is wrong with one bare session's results."""
    if not report.is_file():
        return [f"nox -s {stage.session}: no JUnit report at {report}"]
    try:
        reasons, count = skips(report), ran(report)
    except ET.ParseError as exc:
        return [f"nox -s {stage.session}: {report} is not a JUnit report ({exc})"]
    problems = skip_problems(reasons)
    if count == 0:
        problems.append(f"nox -s {stage.session}: no test ran ({len(reasons)} skipped)")
    if stage.must_skip_for and not any(stage.must_skip_for in r for _, r in reasons):
        problems.append(f"nox -s {stage.session}: no test skipped for {stage.must_skip_for}")
    summary = clone / "_e2e_logs" / stage.session / "summary.json"
    return problems + service_problems(summary, stage.skipped_services)


def run_bare(clone: Path, reports: Path) -> list[str]:
    """Each stage's nox session in the clone with the programs hidden; the problems."""
    problems: list[str] = []
    for stage in STAGES:
        report = reports / f"{stage.session}.xml"
        nox = [sys.executable, "-m", "nox", "-s", stage.session, "--", f"--junitxml={report}"]
        hide = [sys.executable, "-m", "tools.absent", ",".join(HIDDEN), "--"]
        print(f"bare: nox -s {stage.session} without {', '.join(HIDDEN)}", flush=True)
        done = subprocess.run([*hide, *nox], cwd=clone, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            problems.append(f"nox -s {stage.session} failed (exit {done.returncode}) bare")
            continue
        problems += check_stage(stage, clone, report)
    return problems


def main() -> int:
    why = absent.why_not_here()
    if why is not None:
        print(f"bare: cannot hide {', '.join(HIDDEN)}: {why}", file=sys.stderr)
        return absent.CANNOT_HIDE
    with tempfile.TemporaryDirectory(prefix="genesis-bare-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        print(f"bare: a fresh clone of HEAD ({clone}); uncommitted changes are not in it")
        problems = run_bare(clone, Path(tmp) / "reports")
    for problem in problems:
        print(f"bare: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"bare: passed ({', '.join(s.session for s in STAGES)}) without {', '.join(HIDDEN)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
