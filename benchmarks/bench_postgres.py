"""`kind = "postgres"` ready, with a cold and with a warm template cache.

    python benchmarks/bench_postgres.py [--runs 9] [--tmpdir DIR]

Each run is a whole `conductor run db -- COMMAND` in a fresh process. Cold: an empty
cache folder every run (initdb, CREATE DATABASE, storing the entry). Warm: one cache
folder, filled by a run that is not counted. Prints one Markdown table of medians (with
the range): conductor's own `ready_after_s` (summary.json), the wall time from launch to
COMMAND's first instruction (measured from the outside), and how long making the
cluster took (initdb or the copy, from conductor.log). `--tmpdir` puts the runs'
clusters elsewhere (a tmpfs, say) by setting TMPDIR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_conductor import compile_startup_modules

TARGET_S = 0.25  # warm cache, issue 12


@dataclass
class Run:
    ready_s: float  # conductor's ready_after_s for db
    launch_to_command_s: float
    make_s: float  # initdb (+ CREATE DATABASE) or the copy from the cache


def run_once(work: Path, cache: Path, tmpdir: str | None) -> Run:
    stamp = work / "command.stamp"
    stamp.unlink(missing_ok=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if tmpdir:
        env["TMPDIR"] = tmpdir
    argv = [sys.executable, "-m", "conductor", "run", "--config", "conductor.toml", "--"]
    argv += ["sh", "-c", f"date +%s.%N > {shlex.quote(str(stamp))}"]
    launched = time.time()
    proc = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"conductor failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    summary = json.loads((work / "logs" / "summary.json").read_text())
    events = (work / "logs" / "conductor.log").read_text()
    made = re.search(r"db: (?:initdb took|cluster copied from the cache \S+ in) ([\d.]+)s", events)
    if made is None:
        raise SystemExit(f"conductor.log does not say how the cluster was made:\n{events}")
    return Run(
        ready_s=float(summary["services"]["db"]["ready_after_s"]),
        launch_to_command_s=float(stamp.read_text()) - launched,
        make_s=float(made.group(1)),
    )


def measure(runs: int, tmpdir: str | None) -> tuple[list[Run], list[Run]]:
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        work = Path(tmp)
        config = '[services.db]\nkind = "postgres"\ndatabase = "bench"\n'
        (work / "conductor.toml").write_text('logs_dir = "logs"\n' + config)
        cold = [run_once(work, work / f"cold-{i}", tmpdir) for i in range(runs)]
        run_once(work, work / "warm", tmpdir)  # fills the warm cache; not counted
        warm = [run_once(work, work / "warm", tmpdir) for _ in range(runs)]
    return cold, warm


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs with each cache state")
    parser.add_argument("--tmpdir", help="TMPDIR for the runs' clusters (default: the system's)")
    args = parser.parse_args()
    compile_startup_modules()
    cold, warm = measure(args.runs, args.tmpdir)
    where = args.tmpdir or tempfile.gettempdir()
    print(
        f"PostgreSQL ready, cold vs warm cache ({args.runs} runs each, median (min-max); "
        f"clusters in {where}; {os.cpu_count()} cores, Python {sys.version.split()[0]})\n"
    )
    print("| metric | cold cache | warm cache | ratio | target | met |")
    print("|---|---:|---:|---:|---|---|")
    rows = [
        ("PostgreSQL ready (ready_after_s)", [r.ready_s for r in cold], [r.ready_s for r in warm]),
        (
            "launch to COMMAND start",
            [r.launch_to_command_s for r in cold],
            [r.launch_to_command_s for r in warm],
        ),
        ("cluster made (initdb / copy)", [r.make_s for r in cold], [r.make_s for r in warm]),
    ]
    for i, (label, a, b) in enumerate(rows):
        ratio = statistics.median(a) / statistics.median(b)
        target, met = "-", "-"
        if i == 0:
            target = f"warm <= {TARGET_S} s"
            met = "yes" if statistics.median(b) <= TARGET_S else "no"
        print(f"| {label} | {cell(a)} | {cell(b)} | {ratio:.1f}x faster | {target} | {met} |")


if __name__ == "__main__":
    main()
