"""`kind = "postgres"` ready, with a cold and a warm template cache, against pytest-postgresql.

    python benchmarks/bench_postgres.py [--runs 9] [--tmpdir DIR] [--no-anchor]

Each run is a whole `conductor run db -- COMMAND` in a fresh process, in three states:
- cold: an empty cache folder every run (initdb, CREATE DATABASE, storing the entry);
- warm, copied: the entry is there but no spare (each run copies it);
- warm, spare: the run before left a spare copy (its COMMAND lasted long enough for
  the background copy to finish, as a test suite's does), which this run renames.
Prints one Markdown table of medians (with the range): conductor's own
`ready_after_s` (summary.json), the wall time from launch to COMMAND's first
instruction (measured from the outside), and how long making the cluster took (initdb,
the copy or the rename, from conductor.log), and teardown: from COMMAND's last
instruction to the tool's exit (measured from the outside).
The anchor, pytest-postgresql's `postgresql_proc` around a test running the same
COMMAND (benchmarks/alternatives.py), makes a fresh cluster every run; its cells are
the outside times, and conductor's say how they compare with it. `--tmpdir` puts every
run's clusters, the anchor's too, elsewhere (a tmpfs, say) by setting TMPDIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import alternatives
from bench_conductor import compile_startup_modules

TARGET_S = 0.25  # warm cache, issue 12
ANCHOR = "pytest-postgresql postgresql_proc"


@dataclass
class Run:
    ready_s: float | None  # conductor's ready_after_s for db (pytest-postgresql: none)
    launch_to_command_s: float
    make_s: float | None  # initdb (+ CREATE DATABASE) or the copy from the cache
    teardown_s: float  # from COMMAND's end to the tool's exit, the server stopped


def command_argv(stamp: Path, then: str = "") -> list[str]:
    """COMMAND: stamps its start, runs `then`, stamps its end, in one file."""
    quoted = shlex.quote(str(stamp))
    return [
        "sh",
        "-c",
        f"date +%s.%N > {quoted}; {then}{'; ' if then else ''}date +%s.%N >> {quoted}",
    ]


def stamps(stamp: Path) -> tuple[float, float]:
    began, ended = (float(x) for x in stamp.read_text().split())
    return began, ended


def run_once(work: Path, cache: Path, tmpdir: str | None, *, leave_spare: bool = False) -> Run:
    stamp = work / "command.stamp"
    stamp.unlink(missing_ok=True)
    # With leave_spare, COMMAND waits (at most 60 s) for this run's spare copy.
    spare = f"{shlex.quote(str(cache))}/conductor/postgres/*/spare/conductor-spare.json"
    wait = f"for i in $(seq 600); do ls {spare} >/dev/null 2>&1 && break; sleep 0.1; done"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if tmpdir:
        env["TMPDIR"] = tmpdir
    argv = [sys.executable, "-m", "conductor", "run", "--config", "conductor.toml", "--"]
    argv += command_argv(stamp, wait if leave_spare else "")
    launched = time.time()
    proc = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    exited = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"conductor failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    summary = json.loads((work / "logs" / "summary.json").read_text())
    events = (work / "logs" / "conductor.log").read_text()
    made = re.search(
        r"db: (?:initdb took|cluster (?:copied from the cache|taken from the spare copy in) \S+ in)"
        r" ([\d.]+)s",
        events,
    )
    if made is None:
        raise SystemExit(f"conductor.log does not say how the cluster was made:\n{events}")
    began, ended = stamps(stamp)
    return Run(
        ready_s=float(summary["services"]["db"]["ready_after_s"]),
        launch_to_command_s=began - launched,
        make_s=float(made.group(1)),
        teardown_s=exited - ended,
    )


def pytest_postgresql_once(work: Path, python: str) -> Run:
    """One pytest run of `postgresql_proc` around the same COMMAND: a fresh cluster
    each time (initdb, start, the template database), as that fixture makes it."""
    run_dir = Path(tempfile.mkdtemp(prefix="pytest-postgresql-", dir=work))
    stamp = run_dir / "command.stamp"
    launch = alternatives.pytest_postgresql(run_dir, command_argv(stamp), free_port(), python)
    launched = time.time()
    proc = subprocess.run(
        launch.argv,
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=launch.environ(),
        user=launch.user,
        group=launch.group,
        extra_groups=launch.extra_groups(),
    )
    exited = time.time()
    if proc.returncode != 0:
        raise SystemExit(
            f"pytest-postgresql failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    began, ended = stamps(stamp)
    shutil.rmtree(run_dir, ignore_errors=True)
    return Run(None, began - launched, None, exited - ended)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(runs: int, tmpdir: str | None, *, anchor: bool) -> dict[str, list[Run]]:
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        work = Path(tmp)
        config = '[services.db]\nkind = "postgres"\ndatabase = "bench"\n'
        (work / "conductor.toml").write_text('logs_dir = "logs"\n' + config)
        warm = work / "warm"
        states: dict[str, list[Run]] = {"cold": [], "copied": [], "spare": []}
        with contextlib.ExitStack() as stack:
            # Taking turns with conductor's cold runs, so that both see the same load.
            pytest_postgresql = stack.enter_context(anchor_runner(tmpdir)) if anchor else None
            for i in range(runs):
                states["cold"].append(run_once(work, work / f"cold-{i}", tmpdir))
                if pytest_postgresql:
                    states.setdefault(ANCHOR, []).append(pytest_postgresql())
        run_once(work, warm, tmpdir)  # fills the warm cache; not counted
        for _ in range(runs):
            for spare in warm.glob("conductor/postgres/*/spare"):
                shutil.rmtree(spare)
            states["copied"].append(run_once(work, warm, tmpdir))
        if os.stat(work).st_dev != os.stat(tmpdir or tempfile.gettempdir()).st_dev:
            del states["spare"]  # conductor makes no spare it could not rename into place
            return states
        run_once(work, warm, tmpdir, leave_spare=True)  # not counted
        states["spare"] = [run_once(work, warm, tmpdir, leave_spare=True) for _ in range(runs)]
    return states


@contextlib.contextmanager
def anchor_runner(tmpdir: str | None) -> Iterator[Callable[[], Run]]:
    """Runs of pytest-postgresql, its clusters where conductor's go (TMPDIR)."""
    base = tmpdir or tempfile.gettempdir()
    with tempfile.TemporaryDirectory(prefix="bench-pytest-postgresql-", dir=base) as tmp:
        Path(tmp).chmod(0o755)  # as root, pytest runs as postgres in a folder in it
        python = alternatives.postgres_python(Path(tmp))
        pytest_postgresql_once(Path(tmp), python)  # warms imports and initdb; not counted
        yield lambda: pytest_postgresql_once(Path(tmp), python)


def cell(values: list[float]) -> str:
    """Median (min-max) in seconds."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


ROWS: list[tuple[str, Callable[[Run], float | None]]] = [
    ("PostgreSQL ready (ready_after_s)", lambda r: r.ready_s),
    ("launch to COMMAND start", lambda r: r.launch_to_command_s),
    ("cluster made (initdb / copy / rename)", lambda r: r.make_s),
    ("teardown (COMMAND's end to the tool's exit)", lambda r: r.teardown_s),
]


def row_cells(states: dict[str, list[Run]], value: Callable[[Run], float | None]) -> list[str]:
    """conductor's three states, each with how it compares with pytest-postgresql (when
    it was run and has the metric), then pytest-postgresql's own cell."""
    theirs = [v for r in states.get(ANCHOR, []) if (v := value(r)) is not None]
    cells = []
    for state in ("cold", "copied", "spare"):
        if state not in states:
            cells.append("n/a (other file system)")
            continue
        ours = [v for r in states[state] if (v := value(r)) is not None]
        text = cell(ours)
        if theirs:
            ratio = alternatives.verdict(
                statistics.median(ours), statistics.median(theirs), higher_better=False
            )
            text += f", {ratio}"
        cells.append(text)
    if ANCHOR in states:
        cells.append(cell(theirs) if theirs else "n/a")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs with each cache state")
    parser.add_argument("--tmpdir", help="TMPDIR for the runs' clusters (default: the system's)")
    parser.add_argument(
        "--anchor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"run {ANCHOR} too (default: yes)",
    )
    args = parser.parse_args()
    compile_startup_modules()
    alternatives.compile_site_packages()
    states = measure(args.runs, args.tmpdir, anchor=args.anchor)
    where = args.tmpdir or tempfile.gettempdir()
    print(
        f"PostgreSQL ready, cold vs warm cache"
        f"{f', against {ANCHOR}' if args.anchor else ''} ({args.runs} runs each, "
        f"median (min-max); clusters in {where}; {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]})\n"
    )
    anchor = f" {ANCHOR} |" if args.anchor else ""
    print(f"| metric | cold cache | warm, copied | warm, spare |{anchor} target | met |")
    print(f"|---|---:|---:|---:|{'---:|' if args.anchor else ''}---|---|")
    for i, (label, value) in enumerate(ROWS):
        target, met = "-", "-"
        if i == 0:
            target = f"warm <= {TARGET_S} s"
            medians = {
                s: statistics.median(r.ready_s for r in states[s] if r.ready_s is not None)
                for s in ("copied", "spare")
                if s in states
            }
            met = ", ".join(f"{s}: {'yes' if m <= TARGET_S else 'no'}" for s, m in medians.items())
        print(f"| {label} | {' | '.join(row_cells(states, value))} | {target} | {met} |")


if __name__ == "__main__":
    main()
