"""A container service under conductor against testcontainers-python, on podman.

    python benchmarks/bench_containers.py [--runs 5]

Two rows (issue 20, item 9), each measured from the outside:
- "container service ready": from launching the tool's process to a program that it
  hands the service to getting PONG from redis in a container (conductor: COMMAND,
  started once `ready` passed; testcontainers: its own script, once `wait_for_logs`
  returned and the published port is read from the engine).
- "container removed after SIGKILL of the tool": from SIGKILL of the tool, while the
  container runs, to the engine listing no container of that run.

testcontainers reaches podman through podman's Docker-compatible API (`podman system
service`, started and stopped here). Its Ryuk, which would remove a dead session's
containers, is an image from Docker Hub that no registry here can give: it runs with
TESTCONTAINERS_RYUK_DISABLED, and the row says what that leaves. The image is built here
from Debian's packages (packages/conductor/tests/images.py); the engine runs under the
tests' containers.conf.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "packages" / "conductor" / "tests"
CONF = TESTS / "containers.conf"
LABEL_RUN = "conductor.run-id"
GONE_WAIT = 15.0  # past it, a container that is still listed counts as left behind

# The program each tool hands redis to: PING it, stamp the moment PONG came back.
PING = """
import os, pathlib, socket, sys, time
s = socket.create_connection((os.environ["CACHE_HOST"], int(os.environ["CACHE_PORT"])))
s.sendall(b"PING\\r\\n")
assert s.recv(16) == b"+PONG\\r\\n"
pathlib.Path(sys.argv[1]).write_text(repr(time.time()))
if len(sys.argv) > 2:
    time.sleep(120)  # held, to be killed with its tool
"""

# testcontainers' side: start the container, wait for its log line as its docs do,
# read the published port from the engine, then run PING in-process.
TESTCONTAINERS = """
import os, sys
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs
image, stamp, hold = sys.argv[1], sys.argv[2], sys.argv[3:]
box = DockerContainer(image).with_bind_ports(6379, None)
box = box.with_command("redis-server --save '' --protected-mode no")
box.start()
print(box._container.id, flush=True)
wait_for_logs(box, "Ready to accept connections")
box._container.reload()
port = box._container.attrs["NetworkSettings"]["Ports"]["6379/tcp"][0]["HostPort"]
os.environ.update(CACHE_HOST="127.0.0.1", CACHE_PORT=port)
sys.argv = ["ping", stamp, *hold]
try:
    exec(compile(open(os.environ["PING_FILE"]).read(), "ping", "exec"))
finally:
    box.stop()
"""


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        stdin=subprocess.DEVNULL,
    )


def wait_file(path: Path, proc: subprocess.Popen[bytes], what: str) -> float:
    deadline = time.monotonic() + 120
    while not (path.exists() and path.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{what} did not get PONG (exit {proc.poll()})")
        time.sleep(0.002)
    return float(path.read_text())


def gone_after(kill_at: float, listed: list[str]) -> float | None:
    """Seconds from `kill_at` until `podman ps` lists none of `listed` args' containers
    (None: still there after GONE_WAIT)."""
    while time.monotonic() - kill_at < GONE_WAIT:
        if not engine("ps", "--all", "--quiet", *listed).stdout.split():
            return time.monotonic() - kill_at
        time.sleep(0.02)
    return None


class Tool:
    """One tool under measure: `launch` starts it around PING (held when asked to)."""

    what = ""

    def launch(self, stamp: Path, hold: bool) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def started(self, proc: subprocess.Popen[bytes]) -> list[str]:
        """`podman ps` filters naming the containers the running tool started."""
        raise NotImplementedError

    def ready(self, stamp: Path) -> float:
        began = time.time()
        proc = self.launch(stamp, hold=False)
        took = wait_file(stamp, proc, self.what) - began
        proc.communicate(timeout=60)
        return took

    def removed_after_kill(self, stamp: Path) -> float | None:
        proc = self.launch(stamp, hold=True)
        wait_file(stamp, proc, self.what)
        filters = self.started(proc)
        proc.kill()
        killed = time.monotonic()
        proc.communicate()
        took = gone_after(killed, filters)
        if took is None:  # left behind: removed here, by what names this run's only
            for ref in engine("ps", "--all", "--quiet", *filters).stdout.split():
                engine("rm", "--force", "--volumes", ref)
        return took


def spawn(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A tool's process, in a session of its own; stdout is a pipe (testcontainers' side
    prints the container's id there)."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


class Conductor(Tool):
    what = "conductor's COMMAND"

    def __init__(self, work: Path, image: str) -> None:
        self.work = work
        (work / "ping.py").write_text(PING)
        (work / "conductor.toml").write_text(
            'logs_dir = "logs"\n'
            "[services.cache]\n"
            'kind = "container"\n'
            f"image = {json.dumps(image)}\n"
            'command = ["redis-server", "--save", "", "--protected-mode", "no"]\n'
            "container_port = 6379\n"
            'port = "auto"\n'
            'ready = { log = "Ready to accept connections" }\n'
            "stop_timeout = 1\n"
        )

    def launch(self, stamp: Path, hold: bool) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "conductor", "run", "--config", "conductor.toml"]
        argv += ["--", sys.executable, "ping.py", str(stamp), *(["hold"] if hold else [])]
        return spawn(argv, {**os.environ, "CONTAINERS_CONF": str(CONF)}, cwd=self.work)

    def started(self, proc: subprocess.Popen[bytes]) -> list[str]:
        run_id = json.loads((self.work / "logs" / ".conductor-run.json").read_text())["run_id"]
        return ["--filter", f"label={LABEL_RUN}={run_id}"]


class Testcontainers(Tool):
    what = "testcontainers' script"

    def __init__(self, work: Path, image: str) -> None:
        self.work, self.image = work, image
        (work / "ping.py").write_text(PING)
        (work / "tc.py").write_text(TESTCONTAINERS)
        self.socket = work / "podman.sock"
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env={**os.environ, "CONTAINERS_CONF": str(CONF)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if time.monotonic() > deadline or self.service.poll() is not None:
                raise SystemExit("podman's Docker-compatible API did not come up")
            time.sleep(0.01)

    def close(self) -> None:
        self.service.terminate()
        try:
            self.service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.service.kill()
            self.service.wait()

    def launch(self, stamp: Path, hold: bool) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "TESTCONTAINERS_RYUK_DISABLED": "true",  # its image cannot be pulled here
            "PING_FILE": str(self.work / "ping.py"),
        }
        argv = [sys.executable, "-W", "ignore", str(self.work / "tc.py"), self.image, str(stamp)]
        return spawn([*argv, *(["hold"] if hold else [])], env)

    def started(self, proc: subprocess.Popen[bytes]) -> list[str]:
        assert proc.stdout is not None
        box = proc.stdout.readline().decode().strip()  # the id it started, ours to remove
        return ["--filter", f"id={box}"]


def build_image() -> str:
    built = subprocess.run(
        [sys.executable, str(TESTS / "images.py"), "redis"],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise SystemExit(f"no image to measure with: {built.stderr.strip()}")
    return built.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per row and tool")
    args = parser.parse_args()
    if shutil.which("podman") is None:
        raise SystemExit("podman is not installed (apt-get install podman runc mmdebstrap)")
    image = build_image()
    rows: dict[str, dict[str, list[float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ctr-") as tmp:
        for name, make in (("conductor", Conductor), ("testcontainers", Testcontainers)):
            work = Path(tmp) / name
            work.mkdir()
            tool = make(work, image)
            try:
                stamps = iter(work / f"stamp{i}" for i in range(4 * args.runs + 2))
                tool.ready(next(stamps))  # warm: imports, the image's layers
                ready: list[float | None] = [tool.ready(next(stamps)) for _ in range(args.runs)]
                removed = [tool.removed_after_kill(next(stamps)) for _ in range(args.runs)]
                rows[name] = {"ready": ready, "removed": removed}
            finally:
                if isinstance(tool, Testcontainers):
                    tool.close()

    def cell(values: list[float | None]) -> str:
        if any(v is None for v in values):
            left = f"{values.count(None)} of {len(values)}"
            return f"never: still there {GONE_WAIT:.0f} s after, in {left}"
        return f"{statistics.median([v for v in values if v is not None]):.2f} s"

    print(
        f'kind = "container" vs testcontainers-python ({args.runs} runs, median; podman, '
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]})\n"
    )
    print("| metric | conductor | testcontainers (Ryuk off: its image cannot be pulled here) |")
    print("|---|---:|---:|")
    print(
        f"| container service ready (launch to PONG) | {cell(rows['conductor']['ready'])} | "
        f"{cell(rows['testcontainers']['ready'])} |"
    )
    print(
        f"| container removed after SIGKILL of the tool (stop_timeout 1 s) | "
        f"{cell(rows['conductor']['removed'])} | {cell(rows['testcontainers']['removed'])} |"
    )


if __name__ == "__main__":
    main()
