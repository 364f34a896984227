#!/usr/bin/env python3
"""After a conductor run: is anything it started still alive?

    python scripts/check_leftovers.py _e2e_logs/e2e [--since EPOCH] [--engine-seconds N]

Reads each summary.json in the folder (and its run-PID subfolders) written since
EPOCH, and the .conductor-run.json record a run killed before its teardown leaves, and
looks for any process still carrying that run's CONDUCTOR_RUN_ID marker, which every
service and everything they spawned inherit, and for any container still carrying that
run's label (podman or docker, where on PATH). Exit 1 naming them; exit 1 too when an
engine on PATH does not answer `ps` within --engine-seconds (60), which is then asked
nothing more: what it runs could not be checked. An engine that answers with an error
(docker's client with no daemon) runs nothing of these runs, and is passed over.

A run that never started anything (a typo in the configuration, exit 2) leaves neither
file: then there is nothing to check, and it says nothing; conductor's own message is
the one cause.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from conductor.container import LABEL_RUN

MARKER = "CONDUCTOR_RUN_ID"
SUMMARY = "summary.json"
# What a run started, kept until its teardown is done: left behind by a killed run.
RECORD = ".conductor-run.json"
# One engine `ps`: an engine that has not answered in this is hung, not empty.
ENGINE_SECONDS = 60.0


def run_ids(folder: Path, since: float) -> list[str]:
    """The runs in `folder` and its run-PID subfolders since `since`: finished, or
    killed before they could tear down (their record is left; a live run's is not)."""
    found: list[str] = []
    for run_dir in [folder, *sorted(folder.glob("run-*"))]:
        for path in (run_dir / SUMMARY, run_dir / RECORD):
            data = _read(path, since)
            if path.name == RECORD and _is_live(data):
                continue
            run_id = data.get("run_id")
            if isinstance(run_id, str) and run_id and run_id not in found:
                found.append(run_id)
    return found


def _read(path: Path, since: float) -> dict[str, object]:
    try:
        if path.stat().st_mtime < since:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_live(record: dict[str, object]) -> bool:
    """The record's conductor is still running (same pid, started before its record)."""
    pid, started = record.get("conductor_pid"), record.get("started")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return False
    try:
        return psutil.Process(pid).create_time() <= started + 1
    except psutil.Error:
        return False


def survivors(ids: set[str]) -> list[str]:
    alive = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get(MARKER) in ids:
                alive.append(f"pid {proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return alive


def containers(ids: set[str], seconds: float = ENGINE_SECONDS) -> list[str]:
    """The containers, running or not, that carry one of these runs' label, on each
    engine on PATH that answers (conductor names the label; a name proves nothing); an
    engine that does not answer in `seconds` is named too, once, and asked no more."""
    left = []
    for engine in ("podman", "docker"):
        path = shutil.which(engine)
        if path is None:
            continue
        for run_id in sorted(ids):
            try:
                listed = subprocess.run(
                    [path, "ps", "--all", "--quiet", "--filter", f"label={LABEL_RUN}={run_id}"],
                    capture_output=True,
                    text=True,
                    timeout=seconds,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            except OSError:
                break  # not runnable: it ran none of these runs' containers
            except subprocess.TimeoutExpired:
                left.append(
                    f"{engine} did not answer `ps` in {seconds:.0f} s: its containers "
                    "could not be checked; see why it hangs"
                )
                break
            if listed.returncode != 0:
                break  # its own error (no daemon): what it printed names no container
            left += [f"{engine} container {ref} (run {run_id})" for ref in listed.stdout.split()]
    return left


def main() -> int:
    parser = argparse.ArgumentParser(description="find processes a conductor run left behind")
    parser.add_argument("logs_dir", type=Path)
    parser.add_argument("--since", type=float, default=0.0, help="only runs that ended after this")
    parser.add_argument(
        "--engine-seconds",
        type=float,
        default=ENGINE_SECONDS,
        help="how long each engine `ps` may take (an engine that takes longer fails the check)",
    )
    args = parser.parse_args()
    ids = run_ids(args.logs_dir, args.since)
    if not ids:  # conductor started nothing here: nothing can be left
        return 0
    alive = survivors(set(ids)) + containers(set(ids), args.engine_seconds)
    if alive:
        print(
            f"leftovers: {len(alive)} process(es) or container(s) outlived their run:",
            file=sys.stderr,
        )
        for line in alive:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"leftovers: none ({len(ids)} run(s) checked in {args.logs_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
