"""The E2E inner loop: rerunning the E2E tests, three ways, in one run of this script.

    python benchmarks/bench_inner_loop.py [--runs 3] [--nox "python -m nox"] [--no-warmup]

1. `nox -s e2e`, warm (its venv and the front end's packages already installed);
2. `pytest tests/e2e`, which starts a stack of its own through conductor's plugin;
3. `pytest tests/e2e` next to a live `invoke up`, which it attaches to;

and, as the floor the third is measured against, the same pytest with the stack's
environment given (the plugin then starts, attaches to and stops nothing).

Each is timed from the outside: the wall time from launch to exit, split by stamps that
a small plugin (inner_loop_stamps.py, loaded with -p) writes from inside pytest: until
the tests start (launch until every pytest_configure has run: the stack is there), the
tests (collection and the tests), after the tests (until the process tree has exited).
"conductor's part" is the time spent in conductor's own pytest hooks (finding,
attaching to or starting the stack, and stopping it), plus, for `nox -s e2e`, the
start and teardown of its `conductor run` (summary.json). Bytecode is compiled first,
as pip does at install. Prints one Markdown table, then the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conductor.environment import Address, address_env

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LOGS = ROOT / "_e2e_logs"
RECORD = LOGS / ".conductor-run.json"
UP_DEADLINE = 240.0  # invoke up: the whole stack, cold caches, a loaded machine
RUN_DEADLINE = 900.0
TARGET_S = 0.5
SUITE_S = 3.0  # the suite's time outside its tests' calls: fixtures, browser, collection (issue 16)
PYTEST = ["-m", "pytest", "tests/e2e", "-p", "inner_loop_stamps", "-p", "no:randomly", "-q"]


@dataclass(frozen=True)
class Timing:
    wall: float
    start: float  # launch until the tests can begin
    tests: float  # collection and the tests, their fixtures included
    calls: float  # the tests' own time: the sum of their call phases
    teardown: float  # the tests done until the process tree has exited
    conductor: float  # conductor's own part of it: its pytest hooks, or `conductor run`'s


def measure(
    argv: list[str], env: dict[str, str] | None = None, summary: Path | None = None
) -> Timing:
    """Run `argv` in the repository; its wall time and the split the stamps give. With
    `summary` (the logs folder of a `conductor run` around pytest), conductor's part
    is that run's start and teardown, from the summary.json it writes there."""
    with tempfile.TemporaryDirectory(prefix="bench-inner-") as folder:
        stamps = Path(folder) / "stamps"
        environ = {
            **os.environ,
            **(env or {}),
            "BENCH_STAMPS": str(stamps),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        launched = time.time()
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_DEADLINE,
            check=False,
        )
        exited = time.time()
        lines = stamps.read_text().splitlines() if stamps.exists() else []
    marks: dict[str, float] = {}
    for name, value in (line.split() for line in lines):
        marks[name] = marks.get(name, 0.0) + float(value)  # summed: `conductor`, `call`
    if proc.returncode != 0 or {"configured", "finished", "conductor", "call"} - marks.keys():
        sys.exit(f"bench: {shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    own = marks["conductor"]
    if summary is not None:
        found = [*summary.glob("summary.json"), *summary.glob("run-*/summary.json")]
        newest = max(found, key=lambda path: path.stat().st_mtime)
        durations = json.loads(newest.read_text())["durations"]
        own += durations["startup_s"] + durations["teardown_s"]
    return Timing(
        wall=exited - launched,
        start=marks["configured"] - launched,
        tests=marks["finished"] - marks["configured"],
        calls=marks["call"],
        teardown=exited - marks["finished"],
        conductor=own,
    )


def median(timings: list[Timing]) -> Timing:
    """The run with the median wall time (its parts add up, unlike separate medians)."""
    ordered = sorted(timings, key=lambda t: t.wall)
    return ordered[(len(ordered) - 1) // 2]


def published() -> dict[str, object] | None:
    """The live up's run record once it has published its stack (every service ready)."""
    try:
        record = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "stack" not in record:
        return None
    return record


class Up:
    """`invoke up`, started and stopped here: its process group is ours alone."""

    def __init__(self) -> None:
        self.log = Path(tempfile.mkstemp(prefix="bench-invoke-up-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "invoke", "up"],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + UP_DEADLINE
        while (record := published()) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"bench: invoke up did not come up:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)
        self.record = record

    def env(self) -> dict[str, str]:
        """The environment a surrounding `conductor run` gives pytest: the services'
        addresses, and the variables that tell the plugin it runs inside one."""
        stack = self.record["stack"]
        assert isinstance(stack, dict)
        addresses = {n: Address.from_json(a) for n, a in stack["addresses"].items()}
        return {
            **address_env(addresses),
            "CONDUCTOR_SERVICE": "(command)",
            "CONDUCTOR_RUN_ID": "bench-floor",
            "CONDUCTOR_LOGS_DIR": str(LOGS),
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def row(name: str, t: Timing) -> str:
    return (
        f"| {name} | {t.wall:.2f} s | {t.start:.2f} s | {t.tests:.2f} s | {t.calls:.2f} s | "
        f"{t.teardown:.2f} s | {t.conductor:.2f} s |"
    )


def compile_bytecode(*environments: Path) -> None:
    """Measure the code as installed: pip compiles bytecode at install time; uv does not
    by default, and with PYTHONDONTWRITEBYTECODE set every run would compile pytest,
    SQLAlchemy, Playwright... from source again, which is no part of the inner loop."""
    import compileall

    folders = [ROOT / "src", ROOT / "tests", ROOT / "packages" / "conductor" / "src", HERE]
    for prefix in environments:
        folders += sorted(prefix.glob("lib/python3*/site-packages"))
    for folder in folders:
        compileall.compile_dir(folder, quiet=1, workers=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each (median wall)")
    parser.add_argument(
        "--nox",
        default=f"{sys.executable} -m nox",
        help="how to run nox (default: this interpreter's nox module)",
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the unmeasured nox -s e2e first"
    )
    args = parser.parse_args()
    if published() is not None:
        sys.exit(f"bench: a `conductor up` already uses {LOGS}; stop it first")
    nox = [*shlex.split(args.nox), "-s", "e2e", "--", "-p", "inner_loop_stamps"]
    pytest = [sys.executable, *PYTEST]
    if not args.no_warmup:
        print("warming up: nox -s e2e (unmeasured)", file=sys.stderr, flush=True)
        measure(nox)
    compile_bytecode(Path(sys.prefix), ROOT / ".nox" / "e2e")
    nox_summary = LOGS / "e2e"
    rows: dict[str, list[Timing]] = {"nox": [], "own": [], "attached": [], "given": []}
    for _ in range(args.runs):
        rows["nox"].append(measure(nox, summary=nox_summary))
        rows["own"].append(measure([*pytest, "--conductor-attach=never"]))
    up = Up()
    try:
        for _ in range(args.runs):
            rows["attached"].append(measure([*pytest, "--conductor-attach=require"]))
            rows["given"].append(measure(pytest, up.env()))
        alive = up.proc.poll() is None
    finally:
        up.stop()
    if not alive:
        sys.exit("bench: invoke up ended during the attached runs")
    nox_t, own, attached, given = (median(rows[k]) for k in ("nox", "own", "attached", "given"))
    print(f"E2E inner loop, {args.runs} run(s) each (the run with the median wall time).\n")
    print(
        "| run | wall | until the tests start | tests | of which their calls "
        "| after the tests | conductor's part |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("`nox -s e2e` (warm)", nox_t))
    print(row("`pytest tests/e2e`, its own stack", own))
    print(row("`pytest tests/e2e`, attached to a live `invoke up`", attached))
    print(row("floor: the same pytest, the stack's environment given", given))
    over_tests = attached.wall - attached.tests
    # Outside the tests: pytest's own start and exit, and whatever conductor adds to them.
    floor_outside = given.wall - given.tests
    print("\n| target | measured | met |")
    print("|---|---:|---|")
    print(
        f"| attached: conductor's part <= {TARGET_S} s | {attached.conductor:.2f} s | "
        f"{'yes' if attached.conductor <= TARGET_S else 'no'} |"
    )
    print(
        f"| attached: time outside the tests <= the floor's + {TARGET_S} s | "
        f"{over_tests:.2f} s vs {floor_outside:.2f} s | "
        f"{'yes' if over_tests <= floor_outside + TARGET_S else 'no'} |"
    )
    print(
        f"| own stack: tests <= their calls + {SUITE_S} s (issue 16) | "
        f"{own.tests:.2f} s vs {own.calls:.2f} s | "
        f"{'yes' if own.tests <= own.calls + SUITE_S else 'no'} |"
    )
    print(
        f"| attached: wall <= tests + {TARGET_S} s (pytest's own start and exit included) | "
        f"tests + {over_tests:.2f} s | {'yes' if over_tests <= TARGET_S else 'no'} |"
    )


if __name__ == "__main__":
    main()
