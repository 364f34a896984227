"""What a run owns in its logs folder: a lock, so two runs never share one folder, and a
record of every process it started, so a run killed with SIGKILL can be cleaned up.

The OS releases the lock when its holder dies, so "record present, lock free" means the
previous conductor died without tearing down; the record's start times make sure a
recycled pid is never hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conductor import compat, postgres, process
from conductor.command import STOP_GRACE
from conductor.errors import LogsDirBusy

if TYPE_CHECKING:
    import psutil
else:
    from conductor._lazy import psutil

LOCK_NAME = ".conductor.lock"
RECORD_NAME = ".conductor-run.json"
_LEFTOVER_GRACE = 3.0
_POLL = 0.005
_KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the kernel to finish the job


def _started(pid: int) -> float | None:
    return compat.start_time(pid)


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:80] or proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"


@dataclass(frozen=True)
class _Rule:
    """How teardown stops a service: its stop signal, then SIGKILL after its grace."""

    signal: signal.Signals
    grace: float


def _rule(entry: dict[str, Any]) -> _Rule:
    """A recorded service's stop signal and stop_timeout; clean's defaults for a record
    that lacks them (an older conductor's) or holds something else there."""
    name, grace = str(entry.get("stop_signal")), entry.get("stop_timeout")
    sig = signal.Signals[name] if name in signal.Signals.__members__ else signal.SIGTERM
    if not isinstance(grace, int | float) or not 0 < grace < math.inf:
        grace = _LEFTOVER_GRACE
    return _Rule(sig, float(grace))


async def _stop(victims: dict[int, tuple[psutil.Process, _Rule]], leaders: set[int]) -> None:
    """Each victim (and the group of each recorded leader) gets its stop signal, then
    SIGKILL once its own grace is over; returns when all are gone (or 5 s after the
    last SIGKILL). Leaders are signalled as groups only while they are alive: their
    psutil handles check the start time, so a recycled pid is never hit."""
    began = time.monotonic()
    for pid, (proc, rule) in victims.items():
        with contextlib.suppress(psutil.Error):
            if pid in leaders and proc.is_running():
                compat.signal_group(pid, rule.signal)
            proc.send_signal(rule.signal)
    pending = dict(victims)
    killed: set[int] = set()
    last_kill: float | None = None
    while pending:
        now = time.monotonic()
        for pid, (proc, rule) in list(pending.items()):
            try:
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    del pending[pid]
                elif pid not in killed and now >= began + rule.grace:
                    if pid in leaders:
                        compat.signal_group(pid, signal.SIGKILL)
                    proc.kill()
                    killed.add(pid)
                    last_kill = now
            except psutil.Error:
                del pending[pid]
        if last_kill is not None and now - last_kill > _KILL_WAIT:
            return
        await asyncio.sleep(_POLL)


class RunDir:
    """The logs folder of one live run."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._lock: IO[str] | None = None
        self._record: dict[str, Any] = {}

    @property
    def record_path(self) -> Path:
        return self.logs_dir / RECORD_NAME

    def lock(self) -> None:
        """Own the folder, or raise LogsDirBusy naming the run that does."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.logs_dir / LOCK_NAME).open("a+", encoding="utf-8")
        if not compat.try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LogsDirBusy(
                f"another conductor run (pid {holder}) is using {self.logs_dir}; wait for it "
                "to finish, or give this run its own folder with --logs-dir"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def read_record(self) -> dict[str, Any] | None:
        """The run record as written, or None when there is none or it is not JSON. Only
        what it says; whether its processes are still that run's is the reader's check."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    async def stop_leftovers(self, run_id: str | None = None) -> list[str]:
        """Stop what a dead earlier run left behind; describes each process stopped.
        With `run_id` (the watchdog, which knows its run), a record of another run is
        left alone."""
        record = self.read_record()
        if record is None:  # none, or unreadable: nothing in it can be trusted
            self.record_path.unlink(missing_ok=True)
            return []
        if run_id is not None and record.get("run_id") != run_id:
            return []
        rules = {
            str(entry.get("service")): _rule(entry)
            for entry in record.get("processes", [])
            if isinstance(entry, dict)
        }
        # COMMAND (and whatever else is marked but not recorded): SIGTERM, then SIGKILL
        # after its teardown grace, never later than the slowest service.
        fallback = _Rule(
            signal.SIGTERM,
            min(STOP_GRACE, max((r.grace for r in rules.values()), default=STOP_GRACE)),
        )
        victims: dict[int, tuple[psutil.Process, _Rule]] = {}
        leaders: set[int] = set()
        for entry in record.get("processes", []):
            pid, created = int(entry["pid"]), float(entry["created"])
            started = _started(pid)
            if started is not None and abs(started - created) < 0.05:
                with contextlib.suppress(psutil.Error):
                    victims[pid] = (psutil.Process(pid), _rule(entry))
                    leaders.add(pid)
        run_id = str(record.get("run_id", ""))
        if run_id:
            for proc in process.marked_processes(run_id):
                with contextlib.suppress(psutil.Error):
                    service = proc.environ().get(process.MARKER_SERVICE, "")
                    victims.setdefault(proc.pid, (proc, rules.get(service, fallback)))
        described = [_describe(proc) for proc, _ in victims.values()]
        await _stop(victims, leaders)
        for folder in record.get("folders", []):
            # Only a folder that carries this run's marker: the record is just a file.
            postgres.remove_run_folder(Path(folder), run_id)
        self.record_path.unlink(missing_ok=True)
        return described

    def begin(self, run_id: str) -> None:
        self._record = {
            "conductor_pid": os.getpid(),
            "run_id": run_id,
            "started": time.time(),
            "processes": [],
            "folders": [],
        }
        self._save()

    def add_process(
        self, service: str, pid: int, stop_signal: signal.Signals, stop_timeout: float
    ) -> None:
        """Record a service's leader, and how teardown stops it (for the watchdog and
        `clean`, which stop it the same way)."""
        created = _started(pid)
        if created is None:
            return
        self._record["processes"].append(
            {
                "service": service,
                "pid": pid,
                "pgid": pid,
                "created": created,
                "stop_signal": stop_signal.name,
                "stop_timeout": stop_timeout,
            }
        )
        self._save()

    def annotate(self, **fields: Any) -> None:
        """Add facts about the live run to its record (`conductor up` publishes its stack
        there, for `--attach`); gone with the record when the run ends."""
        self._record.update(fields)
        self._save()

    def add_folder(self, folder: Path) -> None:
        self._record["folders"].append(str(folder))
        self._save()

    @property
    def lock_fd(self) -> int:
        """The lock's file descriptor, for the watchdog to share (see watchdog.py)."""
        assert self._lock is not None, "lock() first"
        return self._lock.fileno()

    def _save(self) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._record, indent=2), encoding="utf-8")
        os.replace(tmp, self.record_path)

    def release(self) -> None:
        """Called only once nothing of the run is left."""
        self.record_path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
