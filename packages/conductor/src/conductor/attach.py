"""Reusing a live `conductor up`: same environment, nothing started, nothing stopped.

`conductor up` publishes its stack in its run record once every service is ready: a
fingerprint of the resolved configuration, the selected services, and their addresses.
`conductor run --attach` and the pytest plugin reuse that stack only when

- the record is in the logs folder they would use themselves,
- the fingerprint is the same as theirs, and the `up` runs every service they need
  (it may run more: the run then sees only its own services), and
- the record proves itself: the `up` process and every service process are alive with
  the start times recorded, and every service process carries the run's marker in its
  environment. A file alone is never trusted: pids get recycled, files get copied.

Attaching never stops anything: an attached stack has no teardown at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

from conductor import container, environment
from conductor.config import templates
from conductor.config.loading import Config
from conductor.environment import Address
from conductor.errors import EXIT_SERVICE_FAILED, ConductorError
from conductor.plan import make_plan
from conductor.process import ownership, portable
from conductor.report.console import ServiceReport
from conductor.rundir import lockfile
from conductor.rundir.run_record import BadRecord, ContainerEntry, Record, RunDir

if TYPE_CHECKING:
    import psutil

    from conductor.stack import Stack
else:
    from conductor.process.lazy_psutil import psutil

AttachMode = Literal["auto", "never", "require"]
ATTACH_MODES: tuple[AttachMode, ...] = ("auto", "never", "require")
RECORD_KEY = "stack"
# The record's start times and /proc's agree to a clock tick; a recycled pid is seconds off.
_SAME_START = ownership.START_SLACK


class NotAttachable(ConductorError):
    """No live `up` to reuse here; the message says why (for --attach=require).
    `found` tells a folder with a run record (worth a word) from one without."""

    exit_code = EXIT_SERVICE_FAILED

    def __init__(self, message: str, *, found: bool = True) -> None:
        super().__init__(message)
        self.found = found


@dataclass(frozen=True)
class Fingerprint:
    """What makes two stacks the same: configuration as resolved, and services."""

    digest: str
    config_file: str
    services: tuple[str, ...]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def fingerprint(config: Config, names: list[str] | None) -> Fingerprint:
    """The configuration file's every setting, the environment (interpreter prefix and
    the {env.NAME} values) its templates resolve against, and the selected services with
    their dependencies. Ports are not in it: `up` on fixed ports and a run on
    --auto-ports want the same stack."""
    services = tuple(config.start_order(names))
    specs = msgspec.to_builtins(dict(config.services), enc_hook=str)
    # What the up's services were filled from: their own templates and the top-level
    # env's ([run].env is COMMAND's, which an attached run fills itself).
    used_env = sorted(
        {name for text in [*_strings(specs), *config.env.values()] for name in _env_names(text)}
    )
    payload = {
        "file": str(config.file),
        "root": str(config.root),
        "host": config.host,
        "services": specs,
        "prefix": sys.prefix,
        "env": {name: config.environ.get(name) for name in used_env},
        "env_files": config.files,
        "shared_env": config.env,
        "python": config.python,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return Fingerprint(hashlib.sha256(text.encode()).hexdigest(), str(config.file), services)


def _env_names(text: str) -> list[str]:
    try:
        return list(templates.env_names(text))
    except templates.TemplateError:
        return []


def publish(stack: Stack) -> None:
    """Called by `conductor up` once every service is ready: make the stack attachable."""
    mark = fingerprint(stack.config, stack.names)
    stack.rundir.annotate(
        **{
            RECORD_KEY: {
                "fingerprint": mark.digest,
                "config_file": mark.config_file,
                "services": list(mark.services),
                "logs_dir": str(stack.logs_dir),
                "conductor_started": portable.start_time(os.getpid()),
                "addresses": {n: a.as_json() for n, a in stack.addresses.items()},
                "values": stack.template_values(),
                "skipped": dict(stack.plan.skipped) if stack.plan else {},
            }
        }
    )


@dataclass(frozen=True)
class LiveStack:
    """A verified live `up` of the same configuration and services."""

    run_id: str
    conductor_pid: int
    logs_dir: Path
    services: tuple[str, ...]
    addresses: dict[str, Address]
    skipped: dict[str, str] = field(default_factory=dict)
    # {services.NAME.*} as the up filled them, for --env templates
    values: dict[str, str] = field(default_factory=dict)


def find(config: Config, names: list[str] | None, logs_dir: Path) -> LiveStack:
    """The live `up` in `logs_dir` to reuse, or NotAttachable saying why not."""
    logs_dir = logs_dir.resolve()
    where = str(logs_dir)
    try:
        record = RunDir(logs_dir).read()
    except (FileNotFoundError, BadRecord):
        raise NotAttachable(
            f"no live `conductor up` in {where} to attach to", found=False
        ) from None
    info = record.annotations.get(RECORD_KEY)
    pid = record.conductor_pid
    if not isinstance(info, dict):
        raise NotAttachable(
            f"the conductor run in {where} (pid {pid}) is a `conductor run`, or an `up` "
            "still starting: only a ready `conductor up` is attached to"
        )
    if record.problems:
        raise NotAttachable(
            f"the run record in {where} is not one conductor wrote ({record.problems[0]})"
        )
    try:
        recorded_dir = Path(str(info["logs_dir"])).resolve()
        services = tuple(str(s) for s in info["services"])
        addresses = {str(n): Address.from_json(a) for n, a in info["addresses"].items()}
        skipped = {str(k): str(v) for k, v in info.get("skipped", {}).items()}
        values = {str(k): str(v) for k, v in info.get("values", {}).items()}
        started = float(info["conductor_started"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise NotAttachable(f"the run record in {where} is not one conductor wrote") from None
    run_id = record.run_id
    if recorded_dir != logs_dir:
        raise NotAttachable(
            f"the run record in {where} belongs to the logs folder {recorded_dir} (copied?)"
        )
    wanted = fingerprint(config, names)
    if info.get("config_file") != wanted.config_file:
        raise NotAttachable(
            f"the `conductor up` in {where} runs {info.get('config_file')}, "
            f"not {wanted.config_file}"
        )
    if info.get("fingerprint") != wanted.digest:
        raise NotAttachable(
            f"the `conductor up` in {where} was started from a different configuration "
            f"(the file, the interpreter or an {{env.NAME}} it uses changed since); "
            "restart it to attach"
        )
    if missing := [name for name in wanted.services if name not in services]:
        raise NotAttachable(
            f"the `conductor up` in {where} runs {', '.join(services)}; this run also needs "
            f"{', '.join(missing)}"
        )
    if pid is None or not _same_process(pid, started):
        raise NotAttachable(
            f"the `conductor up` that wrote {where} (pid {pid}) is gone; "
            "`conductor clean` stops what it left"
        )
    if stray := _stray_containers(record, config, services):
        # The up records one container per container service it runs (by its name, so a
        # restart adds no other): anything else is a forger's, each entry an engine call.
        raise NotAttachable(
            f"the run record in {where} is not one conductor wrote (container entry for "
            f"service '{stray}', which the `conductor up` runs as no container)"
        )
    _prove_members(record, ownership.Mark(run_id, str(recorded_dir)), addresses, where)
    if lockfile.holder(RunDir(logs_dir).lock_path) != pid:
        # A live `up` holds its logs folder's lock: a record whose `up` does not (pid 1
        # or any live process named in a forged or copied record) is no live `up`.
        raise NotAttachable(
            f"the `conductor up` that wrote {where} (pid {pid}) does not hold it: the "
            "record was copied or forged, or that up is ending"
        )
    return _as_needed(
        LiveStack(run_id, pid, logs_dir, services, addresses, skipped, values), wanted
    )


def _as_needed(live: LiveStack, wanted: Fingerprint) -> LiveStack:
    """An up of more services than this run needs is attached to as the run it would
    start: its services and addresses only, so COMMAND's environment is the same."""
    ours = set(wanted.services)
    prefixes = tuple(f"services.{name}." for name in ours)
    return replace(
        live,
        services=wanted.services,
        addresses={n: a for n, a in live.addresses.items() if n in ours},
        skipped={n: why for n, why in live.skipped.items() if n in ours},
        values={k: v for k, v in live.values.items() if k.startswith(prefixes)},
    )


def _same_process(pid: int, created: float) -> bool:
    started = portable.start_time(pid)
    return started is not None and abs(started - created) < _SAME_START


def _not_ours(pid: int, created: float, mark: ownership.Mark, up_pid: int) -> str | None:
    """Why `pid` is not the process the run started (None when it is): the same proof
    `clean` asks for (ownership.process). A program that writes its title over its
    environment (redis-server does) no longer shows the mark; it is still the up's when
    it started at the recorded time, is the verified `up` process's own child, and leads
    the process group conductor gave it."""
    try:
        if ownership.process(pid, created, mark) is None:
            return f"pid {pid} is not running"
    except ownership.NotOurs as exc:
        if _child_of_up(pid, created, up_pid):
            return None
        return f"{exc} and is no child of the up"
    return None


def _stray_containers(record: Record, config: Config, services: tuple[str, ...]) -> str | None:
    """The service of the first container entry that is no container service of the up,
    or another container for one; None when there is none."""
    seen: dict[str, tuple[str, str]] = {}
    for box in record.containers:
        spec = config.services.get(box.service)
        if box.service not in services or spec is None or spec.kind != "container":
            return box.service
        if seen.setdefault(box.service, (box.engine, box.ref)) != (box.engine, box.ref):
            return box.service
    return None


def _prove_members(
    record: Record, mark: ownership.Mark, addresses: Mapping[str, Address], where: str
) -> None:
    """Each recorded process and container is the one the up started, or NotAttachable
    names the first that is not."""
    for service, why in _not_started_by_the_up(record, mark, addresses):
        raise NotAttachable(
            f"service '{service}' of the `conductor up` in {where} is not the one it started: {why}"
        )


def _not_started_by_the_up(
    record: Record, mark: ownership.Mark, addresses: Mapping[str, Address]
) -> Iterator[tuple[str, str]]:
    """(service, why) for each member that is not the up's own, one at a time, so the
    engine is asked only while everything before has been proved."""
    up_pid = record.conductor_pid or 0
    for entry in record.processes:
        if (why := _not_ours(entry.pid, entry.started, mark, up_pid)) is not None:
            yield entry.service, why
    asked: set[str] = set()
    for box in record.containers:
        if box.service in asked:
            continue  # its repeats (_stray_containers: one container per service)
        asked.add(box.service)
        if (why := _container_not_ours(box, mark, addresses.get(box.service))) is not None:
            yield box.service, why


def _container_not_ours(
    box: ContainerEntry, mark: ownership.Mark, at: Address | None
) -> str | None:
    """Why the recorded container is not the `up`'s own, running and published where
    its address says (None when it is): the proof is the engine's inspect of it, its
    labels carrying the up's mark, never its name."""
    try:
        engine = container.named_engine(box.engine, os.environ)
        found = container.inspect_blocking(engine, box.ref)
    except (container.NoEngine, ConductorError) as exc:
        return str(exc)
    if found is None:
        return f"container {box.ref} is gone"
    if not found.carries(mark, box.service):
        return f"container {box.ref} does not carry the up's labels"
    if not found.running or found.status != "running":  # docker: Running while paused
        return f"container {box.ref} is {found.status}"
    if at is not None and at.port is not None and not found.publishes(at.host, at.port):
        return f"container {box.ref} is not published on {at.host}:{at.port}"
    return None


def _child_of_up(pid: int, created: float, up_pid: int) -> bool:
    if not _same_process(pid, created):
        return False
    try:
        proc = psutil.Process(pid)
        return (
            proc.ppid() == up_pid
            and portable.leads_group(pid)
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def choose(
    config: Config, names: list[str] | None, logs_dir: Path, mode: AttachMode
) -> tuple[LiveStack | None, NotAttachable | None]:
    """Per `mode`: the live stack to attach to, or None and why not (require: raises)."""
    if mode == "never":
        return None, None
    try:
        return find(config, names, logs_dir), None
    except NotAttachable as exc:
        if mode == "require":
            raise NotAttachable(f"--attach=require: {exc}", found=exc.found) from None
        return None, exc


class AttachedStack:
    """A live `up`'s services, as `conductor run` sees a stack: `start` and `stop` do
    nothing, and a second Ctrl-C kills only the command, never the services."""

    def __init__(
        self,
        config: Config,
        live: LiveStack,
        *,
        command_env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.live = live
        self.logs_dir = live.logs_dir
        self.request_env = dict(command_env or {})  # --env: COMMAND's REQUEST layer
        # The command's own marker: the `up`'s would make the `up` and `conductor clean`
        # treat the command as one of the `up`'s processes.
        self.run_id = os.urandom(16).hex()
        self.plan = None
        self.died: list[str] = []
        self.died_event = asyncio.Event()
        self.ready_at: float | None = None
        self.reports: dict[str, ServiceReport] = {}

    @property
    def env(self) -> dict[str, str]:
        return environment.address_env(self.live.addresses)

    async def start(self) -> None:
        check_request(self.config, list(self.live.services), self.logs_dir, self.request_env)
        self.ready_at = time.monotonic()

    async def stop(self) -> None:
        """Nothing: the services belong to the `up`."""

    def kill_now(self) -> None:
        """Nothing: the services belong to the `up`."""

    def command_env(self) -> environment.Environment:
        """COMMAND's environment (environment.command), from the `up`'s services."""
        return command_env(self.config, self.live, self.request_env, run=self.mark)

    @property
    def mark(self) -> ownership.Mark:
        """The command's own mark (its own run id, in the `up`'s logs folder)."""
        return ownership.Mark(self.run_id, str(self.logs_dir))


def command_env(
    config: Config, live: LiveStack, request: Mapping[str, str], *, run: ownership.Mark | Path
) -> environment.Environment:
    """What a process attached to `live` gets: COMMAND (`run` its own mark) or the pytest
    process (`run` the logs folder): its templates filled from the `up`'s services."""
    context = environment.context_of(config, live.logs_dir, live.addresses, live.values)
    return environment.command(
        config,
        environment.Requested.of(config, request),
        context,
        live.addresses,
        run=run,
        inherited=os.environ,
    )


def check_request(
    config: Config, names: list[str] | None, logs_dir: Path, command_env: Mapping[str, str]
) -> None:
    """What a run that starts its services checks before anything starts (services,
    programs, --env templates), for runs that start nothing; ConfigError if it fails."""
    make_plan(config, names, check_ports=False, logs_dir=logs_dir, command_env=command_env)


def describe(live: LiveStack) -> str:
    return (
        f"attached to the `conductor up` (pid {live.conductor_pid}) in {live.logs_dir}: "
        f"{', '.join(live.addresses) or 'no services'}; nothing started, nothing will be stopped"
    )
