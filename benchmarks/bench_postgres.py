"""`kind = "postgres"` ready, with a cold and with a warm template cache.

    python benchmarks/bench_postgres.py [--runs 9] [--tmpdir DIR]

Each run is a whole `conductor run db -- COMMAND` in a fresh process, in three states:
- cold: an empty cache folder every run (initdb, CREATE DATABASE, storing the entry);
- warm, copied: the entry is there but no spare (each run copies it);
- warm, spare: the run before left a spare copy (its COMMAND lasted long enough for
  the background copy to finish, as a test suite's does), which this run renames.
Prints one Markdown table of medians (with the range): conductor's own
`ready_after_s` (summary.json), the wall time from launch to COMMAND's first
instruction (measured from the outside), and how long making the cluster took (initdb,
the copy or the rename, from conductor.log). `--tmpdir` puts the runs' clusters
elsewhere (a tmpfs, say) by setting TMPDIR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_conductor import compile_startup_modules

TARGET_S = 0.25  # warm cache, issue 12


@dataclass
class Run:
    ready_s: float  # conductor's ready_after_s for db
    launch_to_command_s: float
    make_s: float  # initdb (+ CREATE DATABASE) or the copy from the cache


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
    argv += [
        "sh",
        "-c",
        f"date +%s.%N > {shlex.quote(str(stamp))}" + (f"; {wait}" if leave_spare else ""),
    ]
    launched = time.time()
    proc = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
    )
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
    return Run(
        ready_s=float(summary["services"]["db"]["ready_after_s"]),
        launch_to_command_s=float(stamp.read_text()) - launched,
        make_s=float(made.group(1)),
    )


def measure(runs: int, tmpdir: str | None) -> dict[str, list[Run]]:
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        work = Path(tmp)
        config = '[services.db]\nkind = "postgres"\ndatabase = "bench"\n'
        (work / "conductor.toml").write_text('logs_dir = "logs"\n' + config)
        warm = work / "warm"
        states: dict[str, list[Run]] = {"cold": [], "copied": [], "spare": []}
        states["cold"] = [run_once(work, work / f"cold-{i}", tmpdir) for i in range(runs)]
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


def cell(values: list[float]) -> str:
    """Median (min-max) in seconds."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs with each cache state")
    parser.add_argument("--tmpdir", help="TMPDIR for the runs' clusters (default: the system's)")
    args = parser.parse_args()
    compile_startup_modules()
    states = measure(args.runs, args.tmpdir)
    where = args.tmpdir or tempfile.gettempdir()
    print(
        f"PostgreSQL ready, cold vs warm cache ({args.runs} runs each, median (min-max); "
        f"clusters in {where}; {os.cpu_count()} cores, Python {sys.version.split()[0]})\n"
    )
    print("| metric | cold cache | warm, copied | warm, spare | target | met |")
    print("|---|---:|---:|---:|---|---|")
    rows: list[tuple[str, Callable[[Run], float]]] = [
        ("PostgreSQL ready (ready_after_s)", lambda r: r.ready_s),
        ("launch to COMMAND start", lambda r: r.launch_to_command_s),
        ("cluster made (initdb / copy / rename)", lambda r: r.make_s),
    ]
    for i, (label, value) in enumerate(rows):
        cells = [
            cell([value(r) for r in states[s]]) if s in states else "n/a (other file system)"
            for s in ("cold", "copied", "spare")
        ]
        target, met = "-", "-"
        if i == 0:
            target = f"warm <= {TARGET_S} s"
            medians = {s: statistics.median(r.ready_s for r in states[s]) for s in states}
            met = ", ".join(
                f"{s}: {'yes' if medians[s] <= TARGET_S else 'no'}"
                for s in ("copied", "spare")
                if s in medians
            )
        print(f"| {label} | {' | '.join(cells)} | {target} | {met} |")


if __name__ == "__main__":
    main()
