"""Containers through the engine's command line, podman or docker (one code path: their
CLIs agree on everything used here).

A container's name is only a request: anyone can create one called
`conductor-RUNID-cache`. What conductor proves before it stops or removes a container
is the run's mark in the container's labels, as the engine's `inspect` reports them,
and from then on it acts on the container's id, which the engine never reuses.

A service's environment values (a database password) never go on a command line: the
engine gets `-e NAME` for each, and the value in its own environment, which the
container inherits from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import msgspec

from conductor.errors import ConductorError
from conductor.files.logs import logger
from conductor.files.printable import printable
from conductor.process import portable, reaper
from conductor.process.ownership import Mark, NotOurs

if TYPE_CHECKING:  # the config's types only: the watchdog and clean use this module too
    from conductor.config.schema import EngineName, PullPolicy

# schema.EngineName's values, in the order an engine is looked for (a test keeps them equal)
ENGINES: tuple[EngineName, ...] = ("podman", "docker")
ENGINE_VARIABLE = "CONDUCTOR_CONTAINER_ENGINE"
LABEL_RUN = "conductor.run-id"
LABEL_LOGS = "conductor.logs-dir"
LABEL_SERVICE = "conductor.service"
# `ENGINE info` starts the engine's storage (and, for docker, asks its daemon): a
# second on a loaded machine; an engine that has not answered in this is not usable.
ANSWER_SECONDS = 20.0
# One engine command (inspect, kill, rm): each has its own deadline.
COMMAND_SECONDS = 30.0
# After SIGKILL the engine still has to reap the container and record its exit.
KILLED_SECONDS = 10.0
_SHOWN_NAME = 40
_UNKNOWN = f"is not a container engine conductor knows; use {' or '.join(ENGINES)}"
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")
# A port as engines write it: ASCII digits (str.isdigit() also takes "²", which int() refuses)
_DIGITS = re.compile(r"[0-9]{1,5}")


class NoEngine(Exception):
    """No container engine can be used; `str()` says why and what to do."""


class EngineFailed(ConductorError):
    """The engine refused a command (it exists but cannot do this here): its own line."""

    exit_code = 125


@dataclass(frozen=True)
class Engine:
    name: EngineName
    path: str


def find_engine(wanted: EngineName | None, environ: Mapping[str, str]) -> Engine:
    """The engine a service runs on: its `engine` key, else $CONDUCTOR_CONTAINER_ENGINE,
    else the first of podman and docker on PATH that answers `ENGINE info` (docker's
    client is often installed with no daemon behind it)."""
    named = wanted or environ.get(ENGINE_VARIABLE) or None
    search = environ.get("PATH")
    if named is not None:
        if named not in ENGINES:  # the key is checked by the schema; the variable here
            raise NoEngine(f"{ENGINE_VARIABLE}={named!r} {_UNKNOWN}")
        return named_engine(named, environ)
    tried = []
    for name in ENGINES:
        path = shutil.which(name, path=search)
        if path is None:
            continue
        problem = _info_problem(path, environ)
        if problem is None:
            return Engine(name, path)
        tried.append(f"{name}: {problem}")
    found = (
        f"no container engine answers ({'; '.join(tried)})"
        if tried
        else ("neither podman nor docker is on PATH")
    )
    raise NoEngine(
        f"{found}; install podman (Debian: apt-get install podman runc) or set {ENGINE_VARIABLE}"
    )


def named_engine(name: str, environ: Mapping[str, str]) -> Engine:
    """The engine called `name` (a configuration's or a run record's), on PATH."""
    if name not in ENGINES:
        shown = repr(name) if len(name) <= _SHOWN_NAME else repr(name[:_SHOWN_NAME]) + "..."
        raise NoEngine(f"{shown} {_UNKNOWN}")  # a record's (forged: any length) in one line
    path = shutil.which(name, path=environ.get("PATH"))
    if path is None:
        raise NoEngine(f"container engine '{name}' was not found on PATH; install it")
    return Engine(name, path)


def _info_problem(path: str, environ: Mapping[str, str]) -> str | None:
    try:
        info = subprocess.run(
            [path, "info", "--format", "{{json .}}"],
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=ANSWER_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`info` did not answer in {ANSWER_SECONDS:.0f} s"
    except OSError as exc:
        return str(exc)
    return None if info.returncode == 0 else last_line(info.stderr)


def last_line(text: str) -> str:
    """The engine's own last word (its error), for a one-line message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# Running -------------------------------------------------------------------------------


def container_name(mark: Mark, service: str) -> str:
    """conductor-RUNID-SERVICE, in the characters engines allow in a name."""
    return f"conductor-{mark.run_id}-{_NAME_CHARS.sub('_', service)}"


def labels(mark: Mark, service: str) -> dict[str, str]:
    """The run's mark as the container's labels: what proves it is this run's."""
    return {LABEL_RUN: mark.run_id, LABEL_LOGS: mark.logs_dir, LABEL_SERVICE: service}


@dataclass(frozen=True)
class Publish:
    """`-p HOST:HOST_PORT:CONTAINER_PORT`: the container's port on one host address."""

    host: str
    host_port: int
    container_port: int

    def argument(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.host_port}:{self.container_port}"


@dataclass(frozen=True)
class RunRequest:
    """What `ENGINE run` is given for one service."""

    mark: Mark
    service: str
    image: str
    command: tuple[str, ...] = ()
    publish: Publish | None = None
    env: Mapping[str, str] | None = None  # the container's environment: names on argv only
    options: tuple[str, ...] = ()
    pull: PullPolicy = "missing"
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 5.0

    @property
    def name(self) -> str:
        return container_name(self.mark, self.service)


def run_argv(engine: Engine, request: RunRequest) -> list[str]:
    """`ENGINE run`, attached (its stdout and stderr are the container's, byte for byte,
    for NAME.log) and with no signal proxy: a signal to the client (a Ctrl-C to its
    group) must not reach the container, which conductor stops through the engine, by
    id, once its labels prove it is the run's."""
    argv = [engine.path, "run", "--name", request.name, f"--pull={request.pull}"]
    for key, value in labels(request.mark, request.service).items():
        argv += ["--label", f"{key}={value}"]
    argv += [
        "--sig-proxy=false",
        f"--stop-signal={request.stop_signal}",
        f"--stop-timeout={math.ceil(request.stop_timeout)}",
    ]
    if request.publish is not None:
        argv += ["--publish", request.publish.argument()]
    for name in request.env or {}:
        argv += ["--env", name]  # the value comes from the engine's environment
    return [*argv, *request.options, request.image, *request.command]


def run_environ(base: Mapping[str, str], request: RunRequest) -> dict[str, str]:
    """The engine's own environment for `ENGINE run`: `base` with the container's
    values, which `--env NAME` passes on without putting them on a command line."""
    return {**base, **(request.env or {})}


# Inspecting ----------------------------------------------------------------------------


class _State(msgspec.Struct):
    Status: str = ""
    Running: bool = False
    ExitCode: int = 0


class _Binding(msgspec.Struct):
    HostIp: str = ""
    HostPort: str = ""


class _Network(msgspec.Struct):
    Ports: dict[str, list[_Binding] | None] | None = None


class _Config(msgspec.Struct):
    Labels: dict[str, str] | None = None


class _Inspect(msgspec.Struct):
    Id: str
    Name: str = ""
    State: _State = msgspec.field(default_factory=_State)
    Config: _Config = msgspec.field(default_factory=_Config)
    NetworkSettings: _Network = msgspec.field(default_factory=_Network)


Status = Literal["created", "running", "paused", "restarting", "exited", "stopping", "other"]
_STATUSES = frozenset(typing.get_args(Status))


@dataclass(frozen=True)
class Container:
    """One container as the engine's `inspect` reports it."""

    id: str
    name: str
    labels: Mapping[str, str]
    status: Status
    running: bool
    exit_code: int
    # container port (tcp) -> the (host address, host port) pairs it is published on
    ports: Mapping[int, tuple[tuple[str, int], ...]]

    def carries(self, mark: Mark, service: str | None = None) -> bool:
        """Its labels carry the run's mark (of `service`, if given)."""
        return (
            self.labels.get(LABEL_RUN) == mark.run_id
            and self.labels.get(LABEL_LOGS) == mark.logs_dir
            and (service is None or self.labels.get(LABEL_SERVICE) == service)
        )

    def publishes(self, host: str, host_port: int) -> bool:
        """The engine reports this container's port published on host:host_port."""
        return any(
            port == host_port and address in (host, "", "0.0.0.0", "::")
            for bindings in self.ports.values()
            for address, port in bindings
        )


def _container(found: _Inspect) -> Container:
    ports: dict[int, tuple[tuple[str, int], ...]] = {}
    for key, bindings in (found.NetworkSettings.Ports or {}).items():
        number, _, protocol = key.partition("/")
        if protocol in ("tcp", "") and _DIGITS.fullmatch(number):
            ports[int(number)] = tuple(
                (b.HostIp, int(b.HostPort)) for b in bindings or () if _DIGITS.fullmatch(b.HostPort)
            )
    status = found.State.Status.lower()
    return Container(
        id=found.Id,
        name=found.Name.lstrip("/"),  # docker writes "/name"
        labels=dict(found.Config.Labels or {}),
        status=cast(Status, status if status in _STATUSES else "other"),
        running=found.State.Running,
        exit_code=found.State.ExitCode,
        ports=ports,
    )


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: bytes
    stderr: str


async def call(
    engine: Engine,
    *args: str,
    seconds: float = COMMAND_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> Answer:
    """`ENGINE ARGS...`, its output, within its own deadline (EngineFailed past it)."""
    # conductor's own child (reaper): as subreaper conductor reaps orphans as they die,
    # and must leave this one's exit status to asyncio
    proc = await reaper.create_subprocess_exec(
        engine.path,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ if environ is None else environ),
        process_group=0,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds)
    except BaseException as exc:
        # Past its deadline, or the caller cancelled (a second Ctrl-C): the command, in a
        # group of its own that no Ctrl-C at the terminal reaches, goes with what it started
        _kill_group(proc.pid)
        # asyncio's wait also waits for the pipes to close: one still held by a child
        # that left the group must not outlast the deadline by more than this
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(proc.wait(), _KILLED_GROUP_SECONDS)
        if not isinstance(exc, TimeoutError):
            raise
        raise EngineFailed(f"`{engine.name} {args[0]}` did not answer in {seconds:.0f} s") from None
    assert proc.returncode is not None
    return Answer(proc.returncode, out, err.decode(errors="replace"))


async def inspect(engine: Engine, ref: str) -> Container | None:
    """The container `ref` (id or name) as the engine reports it; None if there is none."""
    return _inspected(engine, await call(engine, *_INSPECT, ref))


def inspect_blocking(
    engine: Engine, ref: str, seconds: float = COMMAND_SECONDS
) -> Container | None:
    """inspect, for a caller that must not await: `--attach` proving an `up`'s containers
    as it chooses (the pytest plugin, before any loop runs; the CLI's run, on its loop
    before anything else runs there). A Ctrl-C meanwhile ends the wait at once: the
    KeyboardInterrupt it raises with no loop, or, on a loop (whose SIGINT handler only
    cancels its main task), CancelledError once the current task is being cancelled."""
    proc = reaper.popen(
        [engine.path, *_INSPECT, ref],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                left = max(0.0, deadline - time.monotonic())
                out, err = proc.communicate(timeout=min(left, _CANCEL_POLL))
                break
            except subprocess.TimeoutExpired:
                if _being_cancelled():
                    raise asyncio.CancelledError from None
                if not left:
                    raise
    except BaseException as exc:  # past its deadline, cancelled, or KeyboardInterrupt
        _kill_group(proc.pid)
        proc.wait()  # its exit only: a pipe held by a child that left the group is not read
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        raise EngineFailed(f"`{engine.name} inspect` did not answer in {seconds:.0f} s") from None
    return _inspected(engine, Answer(proc.returncode, out, err.decode(errors="replace")))


# How often a blocking inspect on a loop looks whether its task is being cancelled.
_CANCEL_POLL = 0.1


def _being_cancelled() -> bool:
    """The caller runs in an asyncio task that has been asked to cancel (Ctrl-C)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return False
    return task is not None and task.cancelling() > 0


_INSPECT = ("container", "inspect", "--")
# After SIGKILL to an engine command's group, how long its pipes may stay open.
_KILLED_GROUP_SECONDS = 2.0


def _kill_group(pid: int) -> None:
    """SIGKILL an engine command past its deadline, and whatever it started (a wrapper
    script's own children, which hold its output open): it leads a group of its own."""
    portable.signal_group(pid, signal.SIGKILL)


def _inspected(engine: Engine, answer: Answer) -> Container | None:
    """What `ENGINE container inspect -- REF` answered, read."""
    try:
        found = msgspec.json.decode(answer.stdout or b"[]", type=list[_Inspect])
    except msgspec.DecodeError:
        raise EngineFailed(
            f"`{engine.name} inspect` answered what is not a container: {last_line(answer.stderr)}"
        ) from None
    if found:
        return _container(found[0])
    if answer.returncode != 0 and "no such" not in answer.stderr.lower():
        raise EngineFailed(f"`{engine.name} inspect` failed: {last_line(answer.stderr)}")
    return None


async def marked(engine: Engine, mark: Mark) -> list[Container]:
    """The containers, running or not, that carry the run's mark. The engine's label
    filter only narrows the search; each one's own inspect is the proof."""
    answer = await call(
        engine,
        "ps",
        "--all",
        "--no-trunc",
        "--filter",
        f"label={LABEL_RUN}={mark.run_id}",
        "--format",
        "{{.ID}}",
    )
    if answer.returncode != 0:
        raise EngineFailed(f"`{engine.name} ps` failed: {last_line(answer.stderr)}")
    found = []
    for ref in answer.stdout.decode().split():
        container = await inspect(engine, ref)
        if container is not None and container.carries(mark):
            found.append(container)
    return found


# Stopping ------------------------------------------------------------------------------

Outcome = Literal["stopped", "forced", "exited", "gone"]


@dataclass(frozen=True)
class Stopped:
    """How a container ended: `stopped` by the stop signal, `forced` (SIGKILL after
    stop_timeout), `exited` by itself before conductor stopped it, or `gone` (removed
    by someone else); its exit code when the engine recorded one."""

    outcome: Outcome
    exit_code: int | None


async def wait_exit(engine: Engine, container_id: str, seconds: float) -> bool:
    """Whether the container has exited within `seconds` (the engine's own `wait`,
    cut off at the deadline)."""
    try:
        await call(engine, "wait", "--", container_id, seconds=seconds)
    except EngineFailed:
        return False
    found = await inspect(engine, container_id)
    return found is None or not found.running


async def stop(
    engine: Engine, ref: str, mark: Mark, service: str, *, stop_signal: str, stop_timeout: float
) -> Stopped:
    """Stop and remove the container `ref`, proven the run's by its labels: the stop
    signal, up to `stop_timeout` for it to exit, then SIGKILL; then `rm --volumes`
    (its anonymous volumes go with it). Raises NotOurs, touching nothing, otherwise."""
    found = await inspect(engine, ref)
    if found is None:
        return Stopped("gone", None)
    if not found.carries(mark, service):
        raise NotOurs(f"container {found.name} ({found.id[:12]}) does not carry this run's labels")
    outcome: Outcome = "exited"
    if found.running:
        outcome = "stopped"
        await _kill(engine, found.id, stop_signal)
        if not await wait_exit(engine, found.id, stop_timeout):
            outcome = "forced"
            await _kill(engine, found.id, "SIGKILL")
            await wait_exit(engine, found.id, KILLED_SECONDS)
    last = await inspect(engine, found.id)
    began = time.monotonic()
    await remove(engine, found.id)
    # Part of the service's stop: said on its own, as a wait of teardown.
    logger.info(
        "%s: removed its container %s (%s rm --volumes) in %.3fs",
        service,
        printable(found.name),
        engine.name,
        time.monotonic() - began,
    )
    return Stopped(outcome, None if last is None else last.exit_code)


async def _kill(engine: Engine, container_id: str, signal_name: str) -> None:
    answer = await call(engine, "kill", f"--signal={signal_name}", "--", container_id)
    # It may have exited meanwhile; that is not a failure of the stop.
    if answer.returncode != 0 and "not running" not in answer.stderr.lower():
        found = await inspect(engine, container_id)
        if found is not None and found.running:
            raise EngineFailed(f"`{engine.name} kill` failed: {last_line(answer.stderr)}")


async def remove(engine: Engine, container_id: str) -> None:
    """Remove the container (by id, already proven the run's) and its anonymous volumes."""
    answer = await call(engine, "rm", "--force", "--volumes", "--", container_id)
    if answer.returncode != 0 and await inspect(engine, container_id) is not None:
        raise EngineFailed(f"`{engine.name} rm` failed: {last_line(answer.stderr)}")
