"""Helpers for conductor's tests: configs in tmp_path, conductor as a real subprocess,
and a per-test marker that finds (and only ever touches) this test's own leftovers.

A plain module beside conftest.py (this folder is no package, so it never clashes
with the project's own `tests` package when both are collected in one run)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import images
from conductor.postgres.binaries import find_bindir

FAKES = Path(__file__).with_name("fakes.py")
RECORD = ".conductor-run.json"
PY = sys.executable

# Tests that need PostgreSQL's server binaries skip without them, in the wording every
# skip for a missing program has ("not installed: WHAT (HOW)"): the project's check
# with those programs really absent (nox -s bare) fails on a skip that says otherwise.
needs_postgres = pytest.mark.skipif(
    find_bindir() is None,
    reason="not installed: PostgreSQL's server binaries (initdb, postgres) "
    "(Debian: apt-get install postgresql)",
)


def default_sigint() -> None:
    """preexec_fn for a Python child a test Ctrl-C's: SIGINT at its default, as in a
    terminal's foreground. A CI job started in the background of a non-interactive shell
    ignores SIGINT, its children inherit that, and Python then installs no
    KeyboardInterrupt handler (CI hung, or the child ran on as if nothing was sent)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def plant_link(path: Path, kind: str, content: str = "precious\n") -> Path:
    """What a hostile logs folder holds: a symlink or a hard link at `path` to a file
    outside it holding `content`; that file (the victim), to check it is intact."""
    victim = path.parent.parent / f"victim-{path.name}"
    victim.write_text(content)
    if kind == "symlink":
        path.symlink_to(victim)
    else:
        os.link(victim, path)
    return victim


def lane_spans(report_html: str, name: str) -> list[tuple[str, float, float]]:
    """(phase, start, end) of each piece of `name`'s lane in report.html, from the
    pieces' titles."""
    found = re.findall(rf"<title>{name}: (\w[\w ]*) ([\d.]+)s → ([\d.]+)s</title>", report_html)
    return [(phase, float(a), float(b)) for phase, a, b in found]


def fake(mode: str, *args: str) -> list[str]:
    return [PY, str(FAKES), mode, *args]


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped (so a
    NUL byte is written as \\u0000, as a user would write it)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted one."""
    return key if key and re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return repr(value)  # nan, inf and -inf are TOML too
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    return str(value)


def write_config(path: Path, services: dict[str, dict[str, object]], **top: object) -> Path:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in top.items()]
    for name, keys in services.items():
        lines.append(f"\n[services.{toml_key(name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gone(pid: int) -> bool:
    """The process has exited: no such pid, or a zombie left for its parent to reap."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(proc: psutil.Process) -> bool:
    """Still running: not exited (a zombie has) and its pid not recycled."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def write_record(folder: Path, record: object) -> Path:
    """A run record as a killed conductor would leave it (or as anyone could forge it)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".conductor-run.json"
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    """Poll a real condition (a file, a process) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or condition}")


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


class Conductor:
    """Runs `python -m conductor` in tmp_path with this test's marker in its environment."""

    def __init__(self, cwd: Path, marker: str) -> None:
        self.cwd = cwd
        self.marker = marker
        self.env = {**os.environ, "CONDUCTOR_TEST_MARKER": marker, "COLUMNS": "200"}
        self.engine_calls: Path | None = None  # use_engine's log of conductor's docker calls

    def argv(self, *args: str) -> list[str]:
        return [PY, "-m", "conductor", *args]

    def run(self, *args: str, timeout: float = 120) -> Result:
        started = time.monotonic()
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def start(
        self, *args: str, sigint: bool = False, path: str | None = None
    ) -> subprocess.Popen[str]:
        """In a session of its own, so a 'terminal Ctrl-C' can go to its whole group.
        `sigint`: for a test that Ctrl-C's conductor itself, SIGINT at its default
        (default_sigint). `path`: its PATH (a fake engine first, say)."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env if path is None else {**self.env, "PATH": path},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=default_sigint if sigint else None,
        )

    def mine(self) -> list[psutil.Process]:
        """Live processes carrying this test's marker (never anything else).

        psutil on purpose, not conductor's own /proc scan (portable.pids_with_environ):
        the check that nothing is left must not share the code it checks."""
        found = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get("CONDUCTOR_TEST_MARKER") != self.marker:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            found.append(proc)
        return found


class Up:
    """A live `conductor up`, started and stopped by the test (its own pid only)."""

    def __init__(self, conductor: Conductor, config: Path, *services: str) -> None:
        self.config = config
        self.logs = config.parent / "logs"
        self.proc = conductor.start("up", "--config", str(config), *services)
        wait_for(self.published, 60, "`conductor up` to publish its stack")
        self.record = json.loads((self.logs / RECORD).read_text())
        self.pids = [p["pid"] for p in self.record["processes"]]
        self.url = self.record["stack"]["addresses"].get("web", {}).get("url")

    def published(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()
        try:
            return "stack" in json.loads((self.logs / RECORD).read_text())
        except (OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None and not any(gone(pid) for pid in self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=30)  # and close its pipes


def watchdog_pid(logs: Path) -> int:
    """The watchdog's pid, as conductor logs it when it starts one."""
    found = re.search(r"watchdog: pid (\d+)", (logs / "conductor.log").read_text())
    assert found, "conductor.log does not name a watchdog"
    return int(found.group(1))


def kill_watchdog(proc: subprocess.Popen[str], logs: Path) -> None:
    """SIGKILL the watchdog of the conductor `proc` (our own child's own child, nothing
    else), so that what conductor started outlives it once conductor is killed too."""
    watchdog = psutil.Process(watchdog_pid(logs))
    assert watchdog.ppid() == proc.pid
    watchdog.kill()
    wait_for(lambda: gone(watchdog.pid), what="the watchdog to die")


def kill_conductor_and_its_watchdog(proc: subprocess.Popen[str], logs: Path) -> None:
    """What `clean` is still for: the run's services outlive both (a `kill -9` of
    conductor and of its watchdog)."""
    kill_watchdog(proc, logs)
    proc.kill()
    proc.wait()
    # the orphaned command still holds these pipes; we stop reading them here
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# A container test that runs on docker as on podman (issue 20 item 6): the same test,
# the same conductor code, through the docker client (see conftest's docker fixture).
BOTH_ENGINES = pytest.mark.parametrize("container_engine", ["podman", "docker"], indirect=True)


def use_engine(conductor: Conductor, engine: images.TestEngine) -> Conductor:
    """`conductor` running its containers on `engine`, under the tests' containers.conf.
    podman needs no naming: it is the first engine conductor looks for."""
    conductor.env["CONTAINERS_CONF"] = str(images.CONF)
    if engine != images.PODMAN:
        conductor.env["CONDUCTOR_CONTAINER_ENGINE"] = engine.name
        conductor.env.update(engine.env)
        conductor.engine_calls = _log_calls(conductor, engine.name)
    return conductor


def _log_calls(conductor: Conductor, name: str) -> Path:
    """Put a `name` on conductor's PATH that logs each call, then runs the real one: the
    conductor fixture fails a test whose conductor never called it. With podman's API
    standing in for a Docker daemon, a container made by podman's own client is seen
    by docker too, so a test could pass on docker having never run it."""
    real = shutil.which(name, path=conductor.env.get("PATH"))
    assert real is not None, name
    shim = conductor.cwd / f".{name}-shim"
    shim.mkdir(exist_ok=True)
    calls = shim / "calls"
    script = shim / name
    script.write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(calls))}\nexec {shlex.quote(real)} "$@"\n'
    )
    script.chmod(0o755)
    conductor.env["PATH"] = f"{shim}{os.pathsep}{conductor.env.get('PATH', '')}"
    return calls


class Containers:
    """The containers one test made, tracked by id or by a run's label (never by a name
    or a broad filter), and removed at its end, with their anonymous volumes."""

    def __init__(self, engine: images.TestEngine = images.PODMAN) -> None:
        self.on = engine
        self.ids: list[str] = []
        self.run_ids: list[str] = []

    def engine(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.on.run(*args)
        if check:
            done.check_returncode()
        return done

    def foreign(self, *args: str) -> str:
        """`ENGINE run --detach ARGS`: a container conductor did not make; its id."""
        found = self.engine("run", "--detach", *args).stdout.strip()
        self.ids.append(found)
        return found

    def of_run(self, run_id: str) -> list[str]:
        """Ids of the containers, running or not, labelled with this run's id."""
        listed = self.engine(
            "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label=conductor.run-id={run_id}"
        )
        return listed.stdout.split()

    def exists(self, ref: str) -> bool:
        # `container inspect`, not podman's own `container exists`: docker has only this
        return self.engine("container", "inspect", ref, check=False).returncode == 0

    def remove_all(self) -> None:
        left = [*self.ids, *(found for run in self.run_ids for found in self.of_run(run))]
        # podman's --force stops with SIGTERM and waits 10 s first (a look-alike's
        # `sleep`, pid 1 in its container, ignores it); docker's kills at once
        now = ["--time", "0"] if self.on.name == "podman" else []
        for ref in left:  # one by one: docker's rm has no --ignore for one already gone
            self.engine("rm", "--force", *now, "--volumes", ref, check=False)
