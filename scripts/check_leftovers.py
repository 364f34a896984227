#!/usr/bin/env python3
"""After a conductor run: is anything it started still alive?

    python scripts/check_leftovers.py _e2e_logs/e2e [--since EPOCH]

Reads each summary.json in the folder (and its run-PID subfolders) written since
EPOCH, and looks for any process still carrying that run's CONDUCTOR_RUN_ID marker,
which every service and everything they spawned inherit. Exit 1 naming them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psutil

MARKER = "CONDUCTOR_RUN_ID"


def run_ids(folder: Path, since: float) -> list[str]:
    found = []
    for summary in [folder / "summary.json", *folder.glob("run-*/summary.json")]:
        if summary.is_file() and summary.stat().st_mtime >= since:
            run_id = json.loads(summary.read_text()).get("run_id")
            if run_id:
                found.append(run_id)
    return found


def survivors(ids: set[str]) -> list[str]:
    alive = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get(MARKER) in ids:
                alive.append(f"pid {proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return alive


def main() -> int:
    parser = argparse.ArgumentParser(description="find processes a conductor run left behind")
    parser.add_argument("logs_dir", type=Path)
    parser.add_argument("--since", type=float, default=0.0, help="only runs that ended after this")
    args = parser.parse_args()
    ids = run_ids(args.logs_dir, args.since)
    if not ids:
        print(f"leftovers: no finished conductor run in {args.logs_dir}", file=sys.stderr)
        return 2
    alive = survivors(set(ids))
    if alive:
        print(f"leftovers: {len(alive)} process(es) outlived their run:", file=sys.stderr)
        for line in alive:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"leftovers: none ({len(ids)} run(s) checked in {args.logs_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
