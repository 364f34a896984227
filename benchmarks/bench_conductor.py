"""conductor against the tools people pick instead, side by side on the same services.

    python benchmarks/bench_conductor.py [--runs 5] [--tools mirakuru,pytest-xprocess]

The anchors (benchmarks/alternatives.py): start-server-and-test and Playwright's
`webServer` on every row, mirakuru and pytest-xprocess on readiness detection and
teardown. Installs the Node ones from benchmarks/package-lock.json when they are missing
(never a browser), then prints one Markdown table: each metric for conductor and every
anchor, how conductor compares with each, and conductor's target. Services and commands
write wall-clock stamps to files, so every number is measured from the outside, not
reported by the tool being measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import alternatives

HERE = Path(__file__).resolve().parent
# The baseline (minimal_launcher.py), run beside conductor in the same measure(): not an
# anchor, the least any launcher does; conductor's cost over it is a row of its own.
MINIMAL = "minimal launcher"

# A service: sleeps DELAY (its own start time), listens, stamps "<began> <listening>",
# answers HTTP; with FLOOD_MB it first writes that much to stdout and stamps the seconds.
SERVICE = r"""
import socket, sys, time
delay, port, stamp, flood = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
began = time.time()
if flood:
    chunk = b"x" * 1023 + b"\n"
    t = time.perf_counter()
    for _ in range(flood * 1024):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    open(stamp + ".flood", "w").write(str(time.perf_counter() - t))
time.sleep(delay)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
open(stamp, "w").write(f"{began} {time.time()}")
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
"""
COMMAND = "date +%s.%N > {0}; date +%s.%N >> {0}"

# For the watchdog row: a service that ignores SIGTERM, and one whose daemon escapes its
# session (double fork + setsid) and writes its pid to argv[2]; both listen on argv[1].
STUBBORN = r"""
import signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
while True:
    s.accept()[0].close()
"""
ESCAPEE = r"""
import os, socket, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[2], "w").write(str(os.getpid()))
        while True:
            time.sleep(3600)
    os._exit(0)
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
while True:
    s.accept()[0].close()
"""


@dataclass
class Run:
    wall: float
    launched: float
    exited: float
    command_start: float
    command_end: float
    services: list[tuple[float, float]]  # (began, listening)
    flood_s: float | None = None
    cpu: float = 0.0  # user + sys seconds of the tool and every process it reaped
    # With probe="importtime": (module, self µs) of what the tool imported before its
    # first spawn; with probe="spawn_cpu": its own CPU seconds (user + sys) until then.
    imports: list[tuple[str, int]] = field(default_factory=list)
    spawn_cpu: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_argv(delay: float, port: int, stamp: Path, flood: int) -> list[str]:
    script = stamp.parent / "service.py"
    script.write_text(SERVICE)
    return [sys.executable, str(script), str(delay), str(port), str(stamp), str(flood)]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Runs a Python tool (`-m MODULE ARGS` or `SCRIPT ARGS`) as python would, and writes
# its own CPU time (user + sys, every thread) to argv[1] at its first spawn of the
# benchmark's service.py (conductor's watchdog comes first, and counts): the start's
# cost in the measure least moved by other load. The same few lines for either tool.
SPAWN_CPU = r"""
import os, resource, runpy, sys
out = sys.argv[1]
def hook(event, args):
    if event == "subprocess.Popen" and not os.path.exists(out):
        if any(str(a).endswith("service.py") for a in args[1]):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            with open(out, "w") as handle:
                handle.write(str(usage.ru_utime + usage.ru_stime))
sys.addaudithook(hook)
if sys.argv[2] == "-m":
    sys.argv = sys.argv[3:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def instrumented(argv: list[str], probe: str | None, work: Path) -> list[str]:
    """A Python tool's argv, run with -X importtime or under SPAWN_CPU (`probe`)."""
    python, *rest = argv
    if probe == "importtime":
        return [python, "-X", "importtime", *rest]
    if probe == "spawn_cpu":
        return [python, "-c", SPAWN_CPU, str(work / "spawn.cpu"), *rest]
    return argv


def imported_before_spawn(output: str, tool: str) -> list[tuple[str, int]]:
    """`-X importtime` lines of a run's stderr, up to conductor's first "NAME: starting"
    (it prints that just before its first spawn; the launcher imports all it needs first)."""
    found = []
    for line in output.splitlines():
        if tool == "conductor" and line.startswith("conductor: ") and line.endswith(": starting"):
            break
        if line.startswith("import time:") and not line.endswith("imported package"):
            self_us, _, name = line.removeprefix("import time:").split("|")
            found.append((name.strip(), int(self_us)))
    return found


def run_once(
    tool: str, work: Path, delays: list[float], flood: int = 0, *, probe: str | None = None
) -> Run:
    """One run of `tool`; `probe` (conductor and the launcher only): "importtime" or
    "spawn_cpu" (see instrumented)."""
    for old in [*work.glob("*.stamp*"), work / "spawn.cpu"]:
        old.unlink(missing_ok=True)
    ports = [free_port() for _ in delays]
    stamps = [work / f"svc{i}.stamp" for i in range(len(delays))]
    cmd_stamp = work / "command.stamp"
    command = ["sh", "-c", COMMAND.format(shlex.quote(str(cmd_stamp)))]
    if tool == "conductor":
        lines = ['logs_dir = "logs"']
        for i, (delay, port) in enumerate(zip(delays, ports, strict=True)):
            argv_i = service_argv(delay, port, stamps[i], flood)
            lines += [
                f"[services.svc{i}]",
                f"command = {json.dumps(argv_i)}",
                f"port = {port}",
                'ready = { http = "/" }',
                "stop_timeout = 5",
            ]
        (work / "conductor.toml").write_text("\n".join(lines) + "\n")
        argv = [
            sys.executable,
            "-m",
            "conductor",
            "run",
            "--config",
            "conductor.toml",
            "--",
            *command,
        ]
        launch = alternatives.Launch(instrumented(argv, probe, work))
    else:
        specs = [
            (service_argv(d, p, stamps[i], flood), p)
            for i, (d, p) in enumerate(zip(delays, ports, strict=True))
        ]
        if tool == MINIMAL:
            launch = alternatives.minimal(work, specs, command)
            launch = alternatives.Launch(instrumented(launch.argv, probe, work))
        else:
            launch = alternatives.LAUNCHERS[tool](work, specs, command)
    out = (work / "tool.out").open("wb")
    cpu_before = children_cpu()
    launched = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(
        launch.argv,
        cwd=work,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=launch.environ(),
        user=launch.user,
        group=launch.group,
        extra_groups=launch.extra_groups(),
    )
    # A blocking wait, woken by the tool's exit. Popen.wait(timeout=...) polls with
    # sleeps of up to 50 ms, which the tool's teardown and overhead would absorb.
    watchdog = threading.Timer(120, os.killpg, (proc.pid, signal.SIGKILL))  # our own group
    watchdog.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    watchdog.cancel()
    if code == -signal.SIGKILL:
        raise SystemExit(f"{tool} did not finish within 120 s; see {work / 'tool.out'}")
    exited = time.time()
    out.close()
    if code != 0:
        raise SystemExit(
            f"{tool} failed ({code}); see {work / 'tool.out'}:\n"
            + (work / "tool.out").read_text()[-2000:]
        )
    c_start, c_end = (float(x) for x in cmd_stamp.read_text().split())
    services = [tuple(float(x) for x in s.read_text().split()) for s in stamps]
    flood_s = None
    if flood:
        flood_s = max(float(Path(str(s) + ".flood").read_text()) for s in stamps)
    output = (work / "tool.out").read_text()
    imports = imported_before_spawn(output, tool) if probe == "importtime" else []
    spawn_cpu = float((work / "spawn.cpu").read_text()) if probe == "spawn_cpu" else None
    return Run(wall, launched, exited, c_start, c_end, services, flood_s, cpu, imports, spawn_cpu)  # type: ignore[arg-type]


def _gone(pid: int) -> bool:
    """Exited: no such pid, or a zombie (its parent, init here, has yet to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def watchdog_once(work: Path) -> float:
    """Seconds from SIGKILL of conductor (mid-run) to the last of its processes gone:
    a service ignoring SIGTERM, a setsid escapee and COMMAND; stop_timeout = 1 s."""
    for name, script in (("stubborn.py", STUBBORN), ("escapee.py", ESCAPEE)):
        (work / name).write_text(script)
    daemon_file, command_file = work / "escapee.pid", work / "command.pid"
    for old in (daemon_file, command_file):
        old.unlink(missing_ok=True)
    lines = ['logs_dir = "wlogs"']
    for name, args in (("stubborn", []), ("escapee", [str(daemon_file)])):
        argv = [sys.executable, str(work / f"{name}.py"), str(free_port()), *args]
        lines += [f"[services.{name}]", f"command = {json.dumps(argv)}"]
        lines += [f"port = {argv[2]}", "stop_timeout = 1"]
    (work / "watchdog.toml").write_text("\n".join(lines) + "\n")
    command = f"echo $$ > {shlex.quote(str(command_file))}; exec sleep 60"
    argv = [sys.executable, "-m", "conductor", "run", "--config", "watchdog.toml"]
    with (work / "watchdog.out").open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--", "sh", "-c", command],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while not (command_file.exists() and daemon_file.exists() and command_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(
                "the watchdog run did not start:\n" + (work / "watchdog.out").read_text()
            )
        time.sleep(0.005)
    record = json.loads((work / "wlogs" / ".conductor-run.json").read_text())
    pids = [entry["pid"] for entry in record["processes"]]
    pids += [int(daemon_file.read_text()), int(command_file.read_text())]
    proc.kill()
    killed = time.perf_counter()
    proc.wait()
    while not all(_gone(pid) for pid in pids):
        if time.perf_counter() - killed > 30:
            for pid in pids:  # what this benchmark started, beneath its own child
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise SystemExit("the watchdog left processes running for 30 s")
        time.sleep(0.001)
    took = time.perf_counter() - killed
    # Not timed: the watchdog then removes the record and exits, freeing the folder.
    record_file = work / "wlogs" / ".conductor-run.json"
    deadline = time.monotonic() + 30
    while record_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return took


SCALE_STOP_TIMEOUT = 2.0


def scale_once(work: Path, services: int) -> float:
    """Teardown of `services` services that stop at once on SIGTERM (`sleep`), as
    summary.json says it: from the first stop signal to the last service gone."""
    sleep = shutil.which("sleep") or "sleep"
    logs = f"scale{services}"
    lines = [f'logs_dir = "{logs}"']
    for i in range(services):
        lines += [f"[services.s{i}]", f'command = ["{sleep}", "600"]']
        lines += [f"stop_timeout = {SCALE_STOP_TIMEOUT}"]
    (work / f"{logs}.toml").write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "conductor", "run", "--config", f"{logs}.toml", "--", "true"]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, check=False)
    summary = json.loads((work / logs / "summary.json").read_text())
    forced = [n for n, s in summary["services"].items() if s["outcome"] != "stopped"]
    if done.returncode != 0 or forced:
        raise SystemExit(
            f"the {services}-service run: exit {done.returncode}, {len(forced)} not stopped"
        )
    return float(summary["durations"]["teardown_s"])


def measure(tool: str, runs: int) -> dict[str, float | None]:
    """Every row for conductor and the wrappers; for the libraries (mirakuru, xprocess),
    readiness detection and teardown, what they are picked for."""
    every_row = tool == "conductor" or tool in alternatives.EVERY_ROW
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        run_once(tool, work, [0.1])  # warm caches (npx, imports) before measuring
        single, baseline = [], []
        for _ in range(runs):  # conductor and the launcher in turns: the same load for both
            single.append(run_once(tool, work, [0.5]))
            if tool == "conductor":
                baseline.append(run_once(MINIMAL, work, [0.5]))
        probed: dict[str, list[Run]] = {tool: [], MINIMAL: []}
        for probe in ("importtime", "spawn_cpu") * (5 if tool == "conductor" else 0):
            for each in (tool, MINIMAL):  # in turns too
                probed[each].append(run_once(each, work, [0.0], probe=probe))
        three, flood = [], []
        if every_row:
            three = [run_once(tool, work, [1.0, 1.0, 1.0]) for _ in range(max(3, runs // 2))]
            flood = [run_once(tool, work, [0.0], flood=200) for _ in range(2)]
        # The others have no watchdog: their services outlive a SIGKILL of them.
        dead = [watchdog_once(work) for _ in range(3)] if tool == "conductor" else []
        # The others start one service each: a stack of hundreds is conductor's row only.
        scale = (
            {n: [scale_once(work, n) for _ in range(3)] for n in (100, 500)}
            if tool == "conductor"
            else {}
        )

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def overhead(r: Run) -> float:
        return r.wall - (r.services[0][1] - r.services[0][0]) - (r.command_end - r.command_start)

    return {
        "overhead_ms": 1000 * med([overhead(r) for r in single]) if every_row else None,
        **(against_launcher(single, baseline, probed, overhead) if baseline else {}),
        "latency_ms": 1000 * med([r.command_start - r.services[0][1] for r in single]),
        "three_s": med([r.command_start - r.launched for r in three]) if three else None,
        "teardown_ms": 1000 * med([r.exited - r.command_end for r in single]),
        "throughput_mb_s": med([200 / r.flood_s for r in flood if r.flood_s]) if flood else None,
        "watchdog_s": med(dead) if dead else None,
        "teardown_100_s": med(scale[100]) if scale else None,
        "teardown_500_s": med(scale[500]) if scale else None,
    }


def against_launcher(
    single: list[Run],
    baseline: list[Run],
    probed: dict[str, list[Run]],
    overhead: Callable[[Run], float],
) -> dict[str, float | None]:
    """conductor and the minimal launcher, run in turns: KEY (conductor's value),
    launcher_KEY, and over_launcher_KEY, conductor's cost over it: the median of the
    differences between runs made one after the other."""
    found: dict[str, float | None] = {}

    def paired(key: str, ours: list[float], theirs: list[float]) -> None:
        found[key] = statistics.median(ours)
        found[f"launcher_{key}"] = statistics.median(theirs)
        found[f"over_launcher_{key}"] = statistics.median(
            [a - b for a, b in zip(ours, theirs, strict=True)]
        )

    paired(
        "overhead_ms", [1000 * overhead(r) for r in single], [1000 * overhead(r) for r in baseline]
    )
    paired("cpu_ms", [1000 * r.cpu for r in single], [1000 * r.cpu for r in baseline])
    ours, theirs = probed["conductor"], probed[MINIMAL]
    spawned = [(a, b) for a, b in zip(ours, theirs, strict=True) if a.spawn_cpu is not None]
    paired(
        "spawn_cpu_ms",
        [1000 * (a.spawn_cpu or 0) for a, _ in spawned],
        [1000 * (b.spawn_cpu or 0) for _, b in spawned],
    )
    imported = [(a, b) for a, b in zip(ours, theirs, strict=True) if a.spawn_cpu is None]
    paired(
        "import_ms",
        [sum(us for _, us in a.imports) / 1000 for a, _ in imported],
        [sum(us for _, us in b.imports) / 1000 for _, b in imported],
    )
    paired(
        "import_modules",
        [len(a.imports) for a, _ in imported],
        [len(b.imports) for _, b in imported],
    )
    return found


# conductor against the minimal launcher: label, key (conductor's; launcher_KEY and
# over_launcher_KEY are the others), unit, target on the cost, its test.
LAUNCHER_ROWS: list[tuple[str, str, str, str, Callable[[float], bool] | None]] = [
    ("wrapper overhead", "overhead_ms", "ms", "<= 60 ms", lambda v: v <= 60),
    ("CPU of a one-service run (user + sys, all processes)", "cpu_ms", "ms", "-", None),
    ("CPU before the first spawn (the tool's own, user + sys)", "spawn_cpu_ms", "ms", "-", None),
    ("imports before the first spawn (-X importtime, self times)", "import_ms", "ms", "-", None),
    ("modules imported before the first spawn", "import_modules", "", "-", None),
]

ROWS = [
    ("wrapper overhead", "overhead_ms", "ms", "<= 150 ms", lambda v: v <= 150, False),
    (
        "readiness detection latency (median)",
        "latency_ms",
        "ms",
        "<= 20 ms",
        lambda v: v <= 20,
        False,
    ),
    ("three 1 s services ready", "three_s", "s", "<= 1.2 s", lambda v: v <= 1.2, False),
    (
        "teardown of a cooperative service",
        "teardown_ms",
        "ms",
        "<= 100 ms",
        lambda v: v <= 100,
        False,
    ),
    (
        "log throughput while flooding",
        "throughput_mb_s",
        "MB/s",
        ">= 200 MB/s",
        lambda v: v >= 200,
        True,
    ),
    (
        "SIGKILL of the tool to the last process gone (stop_timeout 1 s)",
        "watchdog_s",
        "s",
        "<= 2 s",
        lambda v: v <= 2,
        False,
    ),
    (
        "teardown of 100 services (stop_timeout 2 s, none killed)",
        "teardown_100_s",
        "s",
        "<= 1 s",
        lambda v: v <= 1,
        False,
    ),
    (
        "teardown of 500 services (stop_timeout 2 s, none killed)",
        "teardown_500_s",
        "s",
        "<= 2 s",
        lambda v: v <= SCALE_STOP_TIMEOUT,
        False,
    ),
]


def compile_startup_modules() -> None:
    """Measure conductor as installed: pip compiles bytecode at install time (uv does not,
    by default). Without this, a machine with PYTHONDONTWRITEBYTECODE=1 (like this
    project's) recompiles on every start each module conductor loads from outside the
    standard library: its own (~35 ms) and msgspec's, with typing_extensions (~60 ms)."""
    import compileall

    import conductor.cli  # what `conductor run` loads before its first service

    compileall.compile_dir(Path(conductor.cli.__file__).parent, quiet=1)  # and __main__
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None) or ""
        if file.endswith(".py") and not file.startswith(sys.base_prefix):
            compileall.compile_file(file, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per single-service metric")
    parser.add_argument(
        "--tools",
        default=",".join(alternatives.LAUNCHERS),
        help="the anchors to run, comma-separated (default: all of them)",
    )
    args = parser.parse_args()
    anchors = [t for t in args.tools.split(",") if t]
    if unknown := sorted(set(anchors) - set(alternatives.LAUNCHERS)):
        raise SystemExit(
            f"--tools: no anchor named {', '.join(unknown)}; "
            f"use some of {', '.join(alternatives.LAUNCHERS)}"
        )
    alternatives.ensure_node_tools()
    compile_startup_modules()
    alternatives.compile_site_packages()
    ours = measure("conductor", args.runs)
    theirs = {tool: measure(tool, args.runs) for tool in anchors}
    print(
        f"conductor vs {', '.join(anchors)} ({args.runs} runs, median; each anchor's cell: "
        f"its value, and how conductor compares; {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]})\n"
    )
    print(f"| metric | conductor | {' | '.join(anchors)} | target | met |")
    print(f"|---|---:|{'---:|' * len(anchors)}---|---|")
    for label, key, unit, target, ok, higher_better in ROWS:
        a = ours[key]
        assert a is not None
        digits = 2 if unit == "s" else 1  # 1.1 s would hide whether 1.2 s was met
        cells = []
        for tool in anchors:
            b = theirs[tool][key]
            if b is None:  # a feature the tool does not have, or a row it is not run on
                cells.append("n/a")
            else:
                ratio = alternatives.verdict(a, b, higher_better=higher_better)
                cells.append(f"{b:.{digits}f} {unit} ({ratio})")
        print(
            f"| {label} | {a:.{digits}f} {unit} | {' | '.join(cells)} | {target} | "
            f"{'yes' if ok(a) else 'NO'} |"
        )
    print_against_launcher(ours)


def print_against_launcher(ours: dict[str, float | None]) -> None:
    print(
        "\nconductor against benchmarks/minimal_launcher.py (the least a Python program does "
        "for the same job), run in turns with it; cost: the median of run-by-run "
        "differences\n"
    )
    print("| metric | conductor | minimal launcher | cost over the launcher | target | met |")
    print("|---|---:|---:|---:|---|---|")
    for label, key, unit, target, ok in LAUNCHER_ROWS:
        values = [ours[key], ours[f"launcher_{key}"], ours[f"over_launcher_{key}"]]
        a, b, cost = (f"{v or 0:.0f}" if not unit else f"{v or 0:.1f} {unit}" for v in values)
        over = ours[f"over_launcher_{key}"] or 0.0
        met = "-" if ok is None else "yes" if ok(over) else "NO"
        print(f"| {label} | {a} | {b} | {cost} | {target} | {met} |")


if __name__ == "__main__":
    main()
