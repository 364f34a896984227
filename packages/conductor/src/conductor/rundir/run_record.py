"""What a run owns in its logs folder: a lock, so two runs never share one folder, and a
record of every process and folder it started, so a run killed with SIGKILL can be
cleaned up.

The OS releases the lock when its holder dies, so "record present, lock free" means the
previous conductor died without tearing down. The record is only a hint: each entry is
acted on once process/ownership.py proves it (start time and mark for a process, marker file for a
folder); whatever cannot be proven is left alone, and said so in one warning line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conductor.errors import LogsDirBusy
from conductor.files import safe_io
from conductor.process import kill, ownership, portable
from conductor.process.command import STOP_GRACE
from conductor.rundir import lockfile

LOCK_NAME = ".conductor.lock"
RECORD_NAME = ".conductor-run.json"
_LEFTOVER_GRACE = 3.0
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_SHOWN_REASONS = 3
# Past the slowest stop_timeout: the watchdog's own start (its import of conductor) and
# its SIGKILL wait, each well under a second even on a loaded machine.
WATCHDOG_MARGIN = 3.0
# The most `clean` waits for a watchdog, whatever a record's stop_timeout says: past
# it, clean says so (run it again); the record is a hint, never a licence to hang.
WATCHDOG_WAIT_LIMIT = 60.0
_RECORD_BYTES = 16 << 20  # far beyond any run record: its pids, names and folders


@dataclass(frozen=True)
class Rule:
    """How teardown stops a service: its stop signal, then SIGKILL after its grace."""

    signal: signal.Signals
    grace: float


@dataclass(frozen=True)
class Entry:
    service: str
    pid: int
    started: float
    rule: Rule


@dataclass(frozen=True)
class ContainerEntry:
    """A service's container: recorded by name before `ENGINE run`, so that a run killed
    that very instant still names it. The engine is a name, looked up on PATH when it
    is used: a record never says which program to run."""

    service: str
    engine: str
    ref: str
    rule: Rule


# A container's name or id as engines write them; never an option ("--all").
_CONTAINER_REF = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}")
# A service name as the configuration allows one (config.loading): anything else in a
# record (a newline, a terminal escape, a megabyte) is read as "?", so no message about
# the entry carries it.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _service(fields: dict[str, Any]) -> str:
    name = fields.get("service")
    return name if isinstance(name, str) and _SERVICE_NAME.fullmatch(name) else "?"


def _rule(entry: dict[str, Any]) -> Rule:
    """A recorded service's stop signal and stop_timeout; clean's defaults for a record
    that lacks them (an older conductor's) or holds something else there."""
    name = str(entry.get("stop_signal"))
    sig = signal.Signals[name] if name in signal.Signals.__members__ else signal.SIGTERM
    grace = _finite(entry.get("stop_timeout"))
    return Rule(sig, grace if grace is not None and grace > 0 else _LEFTOVER_GRACE)


@dataclass(frozen=True)
class Record:
    """A run record as read back (read_record): only entries of the right shape;
    `problems` says what was wrong with the rest; `annotations`, what the live run added
    (RunDir.annotate: a ready `conductor up` publishes its stack there for --attach)."""

    run_id: str
    processes: list[Entry]
    folders: list[object]
    problems: list[str]
    conductor_pid: int | None = None
    annotations: dict[str, object] = field(default_factory=dict)
    containers: list[ContainerEntry] = field(default_factory=list)


_WRITTEN = {"conductor_pid", "run_id", "started", "processes", "folders", "containers"}


class BadRecord(ValueError):
    """The file is no run record at all; `str()` says why."""


def _finite(value: object) -> float | None:
    """`value` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def parse_record(data: object) -> Record:
    """Read a record of any shape; raises BadRecord when nothing in it can be used."""
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        raise BadRecord(f"it is {kind.get(type(data), 'a number')}, not a JSON object")
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise BadRecord("it has no valid run_id")
    problems: list[str] = []
    processes = data.get("processes", [])
    folders = data.get("folders", [])
    if not isinstance(processes, list):
        problems.append("'processes' is not a list")
        processes = []
    if not isinstance(folders, list):
        problems.append("'folders' is not a list")
        folders = []
    entries = []
    for item in processes:
        pid = item.get("pid") if isinstance(item, dict) else None
        started = _finite(item.get("created")) if isinstance(item, dict) else None
        pgid = item.get("pgid", pid) if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or not isinstance(pid, int)
            or isinstance(pid, bool)
            or not 0 < pid < 1 << 31
            or started is None
        ):
            problems.append(f"process entry {_short(item)} is malformed")
            continue
        if pgid != pid:
            # conductor records only groups its services lead (pgid == pid)
            problems.append(f"pid {pid}: its recorded group {_short(pgid)} is not its own")
            continue
        entries.append(Entry(_service(item), pid, started, _rule(item)))
    conductor_pid = data.get("conductor_pid")
    if isinstance(conductor_pid, bool) or not isinstance(conductor_pid, int):
        conductor_pid = None
    annotations = {str(k): v for k, v in data.items() if k not in _WRITTEN}
    containers = _containers(data.get("containers", []), problems)
    return Record(run_id, entries, list(folders), problems, conductor_pid, annotations, containers)


def _containers(items: object, problems: list[str]) -> list[ContainerEntry]:
    if not isinstance(items, list):
        problems.append("'containers' is not a list")
        return []
    found = []
    for item in items:
        fields = item if isinstance(item, dict) else {}
        ref, engine = fields.get("container"), fields.get("engine")
        if not (isinstance(ref, str) and _CONTAINER_REF.fullmatch(ref) and isinstance(engine, str)):
            problems.append(f"container entry {_short(item)} is malformed")
            continue
        found.append(ContainerEntry(_service(fields), engine, ref, _rule(fields)))
    return found


def read_record(path: Path) -> Record:
    """The one reader of a run record (`clean`, the watchdog, `--attach`): a plain file,
    not a link, of a run record's size at most, parsed by parse_record. Raises
    FileNotFoundError when there is none, and BadRecord (`str()` says why) when what is
    there is no run record at all."""
    try:
        data = json.loads(safe_io.read_text(path, _RECORD_BYTES))
    except FileNotFoundError:
        raise
    except safe_io.NotPlain as exc:
        raise BadRecord(str(exc)) from None
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply
        raise BadRecord("it is not readable JSON") from None
    return parse_record(data)


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Leftovers:
    """What stopping a dead run's leftovers did, and what it left alone."""

    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    record: Path | None = None
    bad: str | None = None  # why the record was no run record at all

    def warning(self) -> str | None:
        """The one line about the record, or None when all of it was proven."""
        if self.bad is not None:
            return (
                f"{self.record} is not a conductor run record ({self.bad}); removed it and "
                "touched nothing else"
            )
        if not self.ignored:
            return None
        shown = "; ".join(self.ignored[:_SHOWN_REASONS])
        more = len(self.ignored) - _SHOWN_REASONS
        if more > 0:
            shown += f"; and {more} more"
        return (
            f"{self.record}: left alone what conductor cannot prove it started ({shown}); "
            "if that is yours, stop it yourself"
        )


async def _stop_containers(
    entries: list[ContainerEntry], mark: ownership.Mark, out: Leftovers
) -> list[str]:
    """Stop and remove a dead run's recorded containers, all at once, each only once
    the engine's inspect shows this run's labels on it; the rest is left alone, said in
    `out.ignored`. (The engine layer is imported only when there are any.)"""
    if not entries:
        return []
    from conductor import container

    async def one(entry: ContainerEntry) -> str | None:
        try:
            engine = container.named_engine(entry.engine, os.environ)
            stopped = await container.stop(
                engine,
                entry.ref,
                mark,
                entry.service,
                stop_signal=entry.rule.signal.name,
                stop_timeout=entry.rule.grace,
            )
        except ownership.NotOurs as exc:
            out.ignored.append(str(exc))
            return None
        except (container.NoEngine, container.EngineFailed) as exc:
            out.ignored.append(f"container {entry.ref}: {exc}")
            return None
        return None if stopped.outcome == "gone" else f"{entry.service} (container {entry.ref})"

    done = await asyncio.gather(*(one(entry) for entry in entries))
    return [name for name in done if name is not None]


def _proven_stops(
    record: Record, told: Record | None, mark: ownership.Mark, logs_dir: Path, out: Leftovers
) -> dict[str, tuple[kill.Targets, Rule]]:
    """Each service's leaders that are provably the run's, with how to stop them: one
    conductor told its watchdog of by its pid and start time (it is alive and started
    then); one only the record names, by ownership.process (the start time, and the
    mark in its environment or its output being its NAME.log in `logs_dir`)."""
    vouched = {entry.pid: entry for entry in (told.processes if told else [])}
    entries = [*vouched.values(), *(e for e in record.processes if e.pid not in vouched)]
    stops: dict[str, tuple[kill.Targets, Rule]] = {}
    for entry in entries:
        if entry.pid in vouched:
            if not portable.process_alive(entry.pid, entry.started, ownership.START_SLACK):
                continue
        else:
            try:
                log = logs_dir / f"{entry.service}.log"
                if ownership.process(entry.pid, entry.started, mark, log) is None:
                    continue
            except ownership.NotOurs as exc:
                out.ignored.append(str(exc))
                continue
        targets, _ = stops.setdefault(
            entry.service, (kill.Targets(mark, entry.service), entry.rule)
        )
        group = portable.leads_group(entry.pid)
        targets.leaders.append(kill.Leader(entry.pid, entry.started, group=group))
    return stops


def _merged(first: list[object], second: list[object]) -> list[object]:
    """`first`, then what only `second` adds, in order."""
    return [*first, *(item for item in second if item not in first)]


def _merged_containers(record: Record, told: Record | None) -> list[ContainerEntry]:
    refs = {entry.ref for entry in record.containers}
    extra = [c for c in (told.containers if told else []) if c.ref not in refs]
    return [*record.containers, *extra]


def told_record(run_id: str, told: bytes) -> Record:
    """What conductor told its watchdog (RunDir.tell): one JSON object a line, each an
    entry exactly as the record holds it, read by the record's own reader."""
    data: dict[str, list[object]] = {"processes": [], "containers": [], "folders": []}
    for line in told.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # only conductor writes the pipe: nothing else is there to read
        if isinstance(item, dict) and len(item) == 1:
            key, value = next(iter(item.items()))
            if key in data:
                data[key].append(value)
    return parse_record({"run_id": run_id, **data})


class RunDir:
    """The logs folder of one live run."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._lock: IO[str] | None = None
        self._record: dict[str, Any] = {}
        # Set by the Stack once its watchdog runs: each entry added to the record is
        # also told to the watchdog (told_record), which needs no disk to act on it.
        self.tell: Callable[[bytes], None] | None = None

    @property
    def record_path(self) -> Path:
        return self.logs_dir / RECORD_NAME

    @property
    def lock_path(self) -> Path:
        return self.logs_dir / LOCK_NAME

    def lock(self, *, create: bool = True) -> bool:
        """Own the folder, or raise LogsDirBusy naming the run that does. With
        create=False (clean) nothing is created: False when there is nothing to own.
        OSError when the folder or its lock file cannot be used (see lockfile)."""
        if not create and not os.path.lexists(self.lock_path) and not self.record_path.is_file():
            return False
        try:
            for attempt in range(3):
                if create:
                    self.logs_dir.mkdir(parents=True, exist_ok=True)
                try:
                    self._lock = lockfile.take(self.lock_path)
                    break
                except FileNotFoundError:
                    # The folder went between mkdir and open (a finished run-PID
                    # subfolder pruned by another run that very instant): make it anew.
                    if not create or attempt == 2:
                        raise
        except lockfile.Busy as busy:
            raise LogsDirBusy(
                self._busy_message(busy.holder), folder=self.logs_dir, holder=busy.holder
            ) from None
        return True

    def _busy_message(self, pid: int | None) -> str:
        """What holds the folder (its record is the hint: a ready `up` publishes its
        stack there, a dead conductor's lock is its watchdog's) and what to do."""
        elsewhere = "or give this run a folder of its own (--if-busy subfolder, --logs-dir)"
        holder = lockfile.describe(pid)
        if self.watchdog_bound() is not None:
            return (
                f"the watchdog of a killed conductor ({holder}) is still stopping what "
                f"its run left in {self.logs_dir}; wait a few seconds (`conductor clean` "
                f"waits for it), {elsewhere}"
            )
        try:
            up = "stack" in self.read().annotations
        except (OSError, BadRecord):
            up = False
        if up:
            return (
                f"a `conductor up` ({holder}) holds {self.logs_dir}; reuse its services "
                f"with `conductor run --attach`, stop it (Ctrl-C where it runs), {elsewhere}"
            )
        return (
            f"another `conductor run` ({holder}) is using {self.logs_dir}; wait for it "
            f"to finish, {elsewhere}"
        )

    def read(self) -> Record:
        """This folder's run record (read_record): only what it says; whether its
        processes are still that run's is the reader's check."""
        return read_record(self.record_path)

    def watchdog_bound(self) -> float | None:
        """How long the watchdog of this folder's run may still work, when the record
        says the run's conductor is gone (so what holds the lock is its watchdog): the
        slowest recorded stop_timeout (at most WATCHDOG_WAIT_LIMIT), plus WATCHDOG_MARGIN.
        WATCHDOG_MARGIN alone while the lock still names that conductor or nobody (its
        watchdog has yet to say it is there). None when the record names no conductor, or one
        that is still alive, or when what holds the lock is not this run's watchdog.
        Asked again on every poll, so it follows the watchdog as it appears. Only a
        hint for how long `clean` waits for the lock: it never makes clean act on
        anything."""
        try:
            record = self.read()
        except (OSError, BadRecord):
            return None
        pid = record.conductor_pid
        if pid is None or not 0 < pid < 1 << 31 or portable.process_alive(pid, None, 0):
            return None
        from conductor.rundir import watchdog  # only here: clean, with a busy folder

        holder = lockfile.holder(self.lock_path)
        if holder == pid or holder is None:
            # The lock still names the killed conductor: its watchdog, which shares that
            # lock, has yet to write its own pid (at once when it wakes; its import may
            # take a moment). Or it names nobody this instant: its holder is between
            # truncating it and writing its pid, as the watchdog taking it over is. Worth
            # the margin, then clean asks again.
            return WATCHDOG_MARGIN
        if holder is None or not watchdog.is_watchdog(holder, self.logs_dir, record.run_id):
            return None
        rules = [e.rule for e in record.processes] + [c.rule for c in record.containers]
        slowest = max([STOP_GRACE, *(rule.grace for rule in rules)])
        return min(slowest, WATCHDOG_WAIT_LIMIT) + WATCHDOG_MARGIN

    async def stop_leftovers(
        self, run_id: str | None = None, told: Record | None = None
    ) -> Leftovers:
        """Stop what a dead earlier run left behind, as its teardown would have (each
        service with its own stop signal, SIGKILL after its stop_timeout, all at once),
        and remove the folders it made; anything the record names that is not provably
        that run's is left alone. With `run_id` (the watchdog, which knows its run), a
        record of another run is left alone altogether.

        `told` is what conductor itself told its watchdog, over the pipe only conductor
        writes (told_record): each process in it is proven by its pid and start time
        alone, so one that rewrote its environment over the run's mark (redis-server's
        process title) is still stopped, and so is all of it when the logs folder, with
        the record, was moved or deleted."""
        out = Leftovers(record=self.record_path)
        record = self._leftover_record(run_id, told, out)
        if record is None:
            return out
        out.ignored += record.problems
        mark = ownership.Mark(record.run_id, str(self.logs_dir))
        stops = _proven_stops(record, told, mark, self.logs_dir, out)
        # COMMAND (and whatever else is marked but not recorded): SIGTERM, then SIGKILL
        # after its teardown grace, never later than the slowest service.
        graces = [rule.grace for _, rule in stops.values()]
        fallback = Rule(signal.SIGTERM, min(STOP_GRACE, max(graces, default=STOP_GRACE)))
        stops.setdefault(ownership.COMMAND, (kill.Targets(mark, ownership.COMMAND), fallback))
        done = await asyncio.gather(
            *(
                kill.stop(targets, rule.signal, rule.grace, describe=True)
                for targets, rule in stops.values()
            )
        )
        rest = await kill.stop(kill.Targets(mark), fallback.signal, fallback.grace, describe=True)
        out.stopped = [name for stopped in (*done, rest) for name in stopped.found]
        out.stopped += await _stop_containers(_merged_containers(record, told), mark, out)
        for folder in _merged(record.folders, told.folders if told else []):
            try:
                if ownership.remove_folder(folder, mark):
                    out.removed.append(str(folder))
            except ownership.NotOurs as exc:
                out.ignored.append(str(exc))
        self._forget()
        return out

    def _leftover_record(
        self, run_id: str | None, told: Record | None, out: Leftovers
    ) -> Record | None:
        """The folder's record, or what conductor told its watchdog when the folder has
        none (moved, deleted); None when there is nothing of this run to stop."""
        try:
            record = self.read()
        except FileNotFoundError:
            return told
        except BadRecord as exc:
            out.bad = str(exc)
            self._forget()
            return told
        if run_id is not None and record.run_id != run_id:
            return told
        return record

    def begin(self, mark: ownership.Mark) -> None:
        self._record = {
            "conductor_pid": os.getpid(),
            "run_id": mark.run_id,
            "started": time.time(),
            "processes": [],
            "folders": [],
            "containers": [],
        }
        self._save()

    def add_container(
        self,
        service: str,
        engine: str,
        ref: str,
        stop_signal: signal.Signals,
        stop_timeout: float,
    ) -> None:
        """Record a service's container (by name, before it is run), and how teardown
        stops it, for the watchdog and `clean`; they act on it only once the engine's
        inspect shows the run's labels on it."""
        self._add(
            "containers",
            {
                "service": service,
                "engine": engine,
                "container": ref,
                "stop_signal": stop_signal.name,
                "stop_timeout": stop_timeout,
            },
        )

    def forget_container(self, ref: str) -> None:
        """A container teardown removed: no longer the run's to stop."""
        self._record["containers"] = [
            c for c in self._record["containers"] if c["container"] != ref
        ]
        self._save()

    def add_process(
        self,
        service: str,
        pid: int,
        started: float | None,
        stop_signal: signal.Signals,
        stop_timeout: float,
    ) -> None:
        """Record a service's leader, and how teardown stops it (for the watchdog and
        `clean`, which stop it the same way)."""
        if started is None:
            return
        self._add(
            "processes",
            {
                "service": service,
                "pid": pid,
                "pgid": pid,
                "created": started,
                "stop_signal": stop_signal.name,
                "stop_timeout": stop_timeout,
            },
        )

    def forget_process(self, pid: int) -> None:
        """A leader that ended as it should (a task that exited 0): it is no longer the
        run's to stop, and `--attach` must not count it as a service that is gone. What
        it left behind still carries the run's marker, so `clean` still finds that."""
        self._record["processes"] = [p for p in self._record["processes"] if p["pid"] != pid]
        self._save()

    def annotate(self, **fields: Any) -> None:
        """Add facts about the live run to its record (`conductor up` publishes its stack
        there, for `--attach`); gone with the record when the run ends."""
        self._record.update(fields)
        self._save()

    def add_folder(self, folder: Path) -> None:
        self._add("folders", str(folder))

    @property
    def lock_fd(self) -> int:
        """The lock's file descriptor, for the watchdog to share (see watchdog.py)."""
        assert self._lock is not None, "lock() first"
        return self._lock.fileno()

    def _add(self, key: str, entry: object) -> None:
        """Add an entry to the record's list `key`, and tell the watchdog of it."""
        self._record[key].append(entry)
        self._save()
        if self.tell is not None:
            self.tell(json.dumps({key: entry}).encode() + b"\n")

    def _save(self) -> None:
        """Owner-only: an `up`'s record holds the values `--attach` renders, passwords
        included."""
        safe_io.replace(self.record_path, json.dumps(self._record, indent=2), 0o600)

    def _forget(self) -> None:
        """Remove the record (something else in its place is left alone)."""
        with contextlib.suppress(OSError):
            self.record_path.unlink(missing_ok=True)

    def release(self) -> None:
        """Called only once nothing of the run is left."""
        self._forget()
        if self._lock is not None:
            # While we still hold it: no stale lock file stays behind (see lockfile).
            lockfile.unlink(self._lock.fileno(), self.lock_path)
            self._lock.close()
            self._lock = None
