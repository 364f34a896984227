"""A running set of services: started in parallel in dependency order, watched while the
command runs, and always stopped in reverse order, leaving nothing behind.

    async with Stack(load_config(), ["backend"], auto_ports=True) as stack:
        status = await stack.run(["pytest", "tests/e2e"])
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import typing
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from conductor import (
    compat,
    environment,
    kill,
    listeners,
    logs,
    owned,
    postgres,
    probes,
    process,
    reaper,
    runfolders,
    watchdog,
)
from conductor.config import Config, ReadySpec
from conductor.environment import Address
from conductor.errors import ConductorError, ConfigError, LogsDirBusy, ServiceFailed
from conductor.plan import Plan, PlannedService, check_ports, make_plan
from conductor.report import Reporter, ServiceReport
from conductor.state import RunDir
from conductor.subreaper import Subreaper

T = TypeVar("T")

FATAL = "fail.log"  # the name of a service's fail.log follower task
FATAL_QUOTE = 300  # the most of a fatal line a failure quotes
# After teardown, how long --show-logs may go on printing what services wrote before.
ECHO_DRAIN = 2.0


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run `awaitable` to the end even if we are cancelled meanwhile, then re-raise the
    cancellation: teardown must never be cut short."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


@dataclass
class _Runtime:
    planned: PlannedService
    report: ServiceReport
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    proc: asyncio.subprocess.Process | None = None
    started: float | None = None  # the service's start time, as compat.start_time gives it
    log_fd: int | None = None
    cluster: postgres.Cluster | None = None


def _knocks_on_port(ready: ReadySpec) -> bool:
    """Whether the probe passes only by connecting to the service's own port."""
    if ready.kind == "tcp":
        return True
    return ready.kind == "http" and "://" not in str(ready.target or "")


class Stack:
    """Services of one run. `start()` raises ConfigError (nothing started) or
    ServiceFailed (everything already stopped again). A Stack runs once: starting it
    again raises ConductorError."""

    def __init__(
        self,
        config: Config,
        services: list[str] | None = None,
        *,
        logs_dir: Path | None = None,
        auto_ports: bool = False,
        show_logs: bool = False,
        reporter: Reporter | None = None,
        subreaper: Subreaper | None = None,
        command_env: dict[str, str] | None = None,
        subfolder_if_busy: bool = False,
    ) -> None:
        self.config = config
        self.subfolder_if_busy = subfolder_if_busy
        self.request_env = dict(command_env or {})  # --env: COMMAND's REQUEST layer
        self.names = services
        self.logs_dir = (logs_dir or config.logs_dir).resolve()
        self._base_logs_dir = self.logs_dir  # logs_dir may become a run-PID subfolder of it
        self._logs_dir_given = logs_dir is not None
        self.auto_ports = auto_ports
        self.show_logs = show_logs
        self.reporter = reporter or Reporter()
        if subreaper is not None and not isinstance(subreaper, Subreaper):
            raise TypeError(
                "subreaper takes the conductor CLI's own Subreaper; a library caller never "
                "becomes a subreaper (README: What conductor will and won't touch)"
            )
        self.subreaper = subreaper
        self.run_id = os.urandom(16).hex()
        self.plan: Plan | None = None
        self.runtimes: dict[str, _Runtime] = {}
        self.died: list[str] = []
        self.died_event = asyncio.Event()
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.leftovers: list[str] = []
        self.skipped: dict[str, ServiceReport] = {}
        self._rundir = RunDir(self.logs_dir)
        self._locked = False
        self._stopping = False
        self._stopped = False
        self._killed = False  # kill_now: every service got conductor's SIGKILL
        self._preloading = False
        self._used = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._echoes: set[asyncio.Task[None]] = set()
        self._log_handler: object | None = None
        self._reaper: reaper.Reaper | None = None
        self._watchdog: watchdog.Watchdog | None = None

    # public view ----------------------------------------------------------------
    @property
    def reports(self) -> dict[str, ServiceReport]:
        """Every service of the run, those skipped as optional included."""
        return {**{name: rt.report for name, rt in self.runtimes.items()}, **self.skipped}

    @property
    def urls(self) -> dict[str, str]:
        return {n: rt.planned.url for n, rt in self.runtimes.items() if rt.planned.url}

    @property
    def addresses(self) -> dict[str, Address]:
        """Host, port and url of every running (ready or reused) service."""
        return {
            name: Address(rt.planned.host, rt.planned.port, rt.planned.url)
            for name, rt in self.runtimes.items()
            if rt.report.status in ("ready", "reused")
        }

    @property
    def env(self) -> dict[str, str]:
        """NAME_HOST, NAME_PORT and NAME_URL for every running service."""
        return environment.address_env(self.addresses)

    @property
    def rundir(self) -> RunDir:
        """The logs folder's lock and run record (`conductor up` publishes itself there)."""
        return self._rundir

    @property
    def mark(self) -> owned.Mark:
        """What every process of this run carries (the logs folder is final once locked)."""
        return owned.Mark(self.run_id, str(self.logs_dir))

    def exported_env(self) -> dict[str, str]:
        """What the pytest process's environment gets over its own (no mark: it is
        not one of the run's processes), for its workers to inherit."""
        return self._command_env(self.logs_dir).added()

    def _command_env(self, run: owned.Mark | Path) -> environment.Environment:
        context = (
            self.plan.context
            if self.plan
            else environment.context_of(self.config, self.logs_dir, self.addresses)
        )
        requested = environment.Requested.of(self.config, self.request_env)
        return environment.command(
            self.config, requested, context, self.addresses, run=run, inherited=os.environ
        )

    def template_values(self) -> dict[str, str]:
        """{services.NAME.*} of the running services, as their templates were filled."""
        if self.plan is None:
            return {}
        up = {f"services.{name}." for name in self.addresses}
        return {k: v for k, v in self.plan.context.values.items() if k.startswith(tuple(up))}

    def command_env(self) -> environment.Environment:
        """COMMAND's environment (environment.command), with the run's mark."""
        return self._command_env(self.mark)

    def _preload(self) -> None:
        """Import aiohttp (~0.3 s, for HTTP probes) and psutil (for teardown) in a thread,
        once the first service is spawned: earlier, the import would hold the GIL while
        we fork; later, a probe would wait for it."""
        if self._preloading:
            return
        self._preloading = True
        http = self.plan is not None and any(
            p.ready.kind == "http" for p in self.plan.services.values()
        )

        def load() -> None:
            if http:
                probes.preload_http()
            process.preload()

        task = asyncio.create_task(asyncio.to_thread(load))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _lock_logs_dir(self) -> None:
        """Own the logs folder; when another run holds it and we may, use a subfolder of
        it instead, so simultaneous runs (two `nox -s e2e`) both go ahead."""
        try:
            self._rundir.lock()
        except LogsDirBusy:
            if not self.subfolder_if_busy:
                raise
            busy = self.logs_dir
            self.logs_dir, made = runfolders.subfolder(busy)
            self._rundir = RunDir(self.logs_dir)
            self._rundir.lock()
            runfolders.claim(self.logs_dir, self.run_id, made=made)
            self.reporter.info(f"{busy} is used by another run; this run logs to {self.logs_dir}")

    def _prune(self) -> None:
        """Finished run-PID subfolders of the configured logs folder beyond the newest
        few go (runfolders.py); whatever goes wrong is one warning, never the run's end."""
        pruned = runfolders.prune(self._base_logs_dir)
        if pruned.removed:
            logs.logger.info(
                "pruned %d finished run-PID subfolder(s): %s",
                len(pruned.removed),
                ", ".join(p.name for p in pruned.removed),
            )
        warning = pruned.warning()
        if warning:
            self.reporter.warning(warning)

    def _unusable_logs_dir(self, exc: OSError) -> ConfigError:
        """One line for a logs folder that is a file, lies under a file, or is not
        writable: which folder, what is wrong, and where it was configured."""
        blocker = next(
            (p for p in (self.logs_dir, *self.logs_dir.parents) if p.exists() and not p.is_dir()),
            None,
        )
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
        else:
            reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        message = (
            f"cannot use {self.logs_dir} as the logs folder ({reason}); "
            "point it at a folder conductor can create and write"
        )
        if self._logs_dir_given:
            return ConfigError(message, key="--logs-dir")
        return ConfigError(message, file=self.config.file, key="logs_dir")

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await shielded(self.stop())

    async def run(self, command: list[str]) -> int:
        """Run COMMAND in the stack's environment with our stdio; its exit status."""
        from conductor.command import Command

        env = self.command_env()
        for notice in env.notices():
            self.reporter.info(notice)
        cmd = Command(command, env.values, self.mark, cwd=self.config.command_cwd)
        await cmd.start()
        try:
            return await cmd.wait()
        finally:
            await shielded(cmd.terminate(5.0))

    # start ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bring every service up in dependency order; on any failure (or Ctrl-C) stop
        what started and raise. Each phase below releases the logs folder if it fails."""
        # A stopped Stack keeps its `_stopped` flag, so a second start would bring up
        # services that its stop() then never stops: refuse instead.
        if self._used:
            raise ConductorError(
                "this Stack has already been started once; create a new Stack for each "
                "`async with` (or start())"
            )
        self._used = True
        self.started_at = time.monotonic()
        # Everything the file alone can get wrong fails here, before the logs folder is
        # touched; ports are checked below, once a killed run's leftovers are gone.
        unchecked = self._plan()
        self._claim_logs_dir()
        if self.logs_dir != unchecked.logs_dir:
            # Busy: this run logs to a run-PID subfolder, which every log path and
            # {logs_dir} names; the only start that plans again.
            unchecked = self._plan()
        self._prune()
        self._adopt_orphans()
        plan = await self._clear_and_check(unchecked)
        self._begin_record()
        self.runtimes = {
            name: _Runtime(
                p,
                ServiceReport(name=name, host=p.host, port=p.port, url=p.url, log=str(p.log_path)),
            )
            for name, p in plan.services.items()
        }
        self.reporter.track(self.reports)
        if self.show_logs:
            for rt in self.runtimes.values():
                self._spawn_bg(self._echoes, self._echo(rt))
        await self._bring_all_up()
        self.ready_at = time.monotonic()
        self.reporter.untrack()

    def _plan(self) -> Plan:
        """The start's plan for its logs folder; ports are checked by _clear_and_check."""
        try:
            return make_plan(
                self.config,
                self.names,
                auto_ports=self.auto_ports,
                logs_dir=self.logs_dir,
                check_ports=False,
                command_env=self.request_env,
            )
        except BaseException:
            if self._locked:
                self._release()
            raise

    def _claim_logs_dir(self) -> None:
        """Take the logs folder's lock and open conductor.log there."""
        try:
            self._lock_logs_dir()
            self._locked = True
            self._log_handler = logs.setup_event_log(self.logs_dir)
        except OSError as exc:
            self._release()
            raise self._unusable_logs_dir(exc) from None

    def _adopt_orphans(self) -> None:
        """As subreaper we adopt every orphan below us: wait for each as it dies, not
        only at teardown (defect: zombies piled up while COMMAND ran)."""
        if self.subreaper is not None and self.subreaper.active:
            self._reaper = reaper.Reaper()
            if not self._reaper.install(asyncio.get_running_loop()):
                self._reaper = None

    async def _clear_and_check(self, unchecked: Plan) -> Plan:
        """Stop what a killed run left in the folder, then check the plan's ports (the
        leftovers may have held them)."""
        try:
            earlier = await self._rundir.stop_leftovers()
            self.leftovers = earlier.stopped
            if self.leftovers:
                self.reporter.warning(
                    f"stopped {len(self.leftovers)} process(es) left by an earlier run in "
                    f"{self.logs_dir}: " + "; ".join(self.leftovers)
                )
            ignored = earlier.warning()
            if ignored:
                self.reporter.warning(ignored)
            self.plan = plan = check_ports(unchecked, auto_ports=self.auto_ports)
        except BaseException:
            self._release()
            raise
        for name, reason in plan.skipped.items():
            self.skipped[name] = ServiceReport(name=name, status="skipped", detail=reason)
            self.reporter.info(f"{name}: skipped ({reason})")
        return plan

    def _begin_record(self) -> None:
        """The run record, then the watchdog: if conductor dies from here on, before
        any service has started, the watchdog cleans up."""
        try:
            self._rundir.begin(self.mark)
        except OSError as exc:
            self._release()
            raise self._unusable_logs_dir(exc) from None
        self._watchdog = watchdog.start(self.logs_dir, self.run_id, self._rundir.lock_fd)
        if self._watchdog is not None:
            logs.logger.debug("watchdog: pid %d", self._watchdog.pid)
        elif not compat.WINDOWS:
            logs.logger.warning("watchdog: could not be started; if conductor dies, run clean")

    async def _bring_all_up(self) -> None:
        """Every service's start at once (each waits for its dependencies); the first
        failure cancels the rest and stops what started."""
        tasks = {
            name: asyncio.create_task(self._bring_up(rt), name=f"start {name}")
            for name, rt in self.runtimes.items()
        }
        try:
            pending: set[asyncio.Task[None]] = set(tasks.values())
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
        except BaseException as exc:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            self.reporter.untrack()
            if isinstance(exc, ServiceFailed):
                failed = self.runtimes.get(exc.service)
                if failed is not None:
                    failed.report.status = "failed"
                self.reporter.failure(
                    exc.service, exc.reason, failed.planned.log_path if failed else None
                )
            await shielded(self.stop())
            raise

    async def _bring_up(self, rt: _Runtime) -> None:
        try:
            await self._start_service(rt)
        except asyncio.CancelledError:
            # Another service failed (or Ctrl-C) while this one was on its way.
            rt.report.status = "not ready" if rt.proc is not None else "not started"
            raise

    async def _start_service(self, rt: _Runtime) -> None:
        p, report = rt.planned, rt.report
        if p.depends_on:
            self.reporter.event(p.name, "waiting", "for " + ", ".join(p.depends_on))
            await asyncio.gather(*(self.runtimes[d].ready.wait() for d in p.depends_on))
        began = time.monotonic()
        deadline = began + p.spec.ready_timeout
        if p.reuse:
            await self._reuse(rt, deadline)
            return
        try:
            rt.log_fd = logs.open_log(p.log_path)
        except OSError as exc:
            raise ServiceFailed(
                p.name, f"could not be started: cannot write its log {p.log_path}: {exc.strerror}"
            ) from None
        env = environment.service(p, self.mark, os.environ)
        command, cwd, run_as = list(p.command), p.cwd, None
        self.reporter.event(p.name, "starting")
        if p.pg is not None:
            assert p.port is not None
            rt.cluster = postgres.Cluster(p.name, p.pg, p.host, p.port, self.mark)
            self._rundir.add_folder(p.pg.folder)  # recorded first: a kill can come any time
            rt.cluster.make_folder()
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                    await rt.cluster.init(rt.log_fd, env)
            except TimeoutError:
                raise ServiceFailed(p.name, "timed out in initdb") from None
            command, cwd, run_as = rt.cluster.command(), rt.cluster.socket_dir, postgres.run_as()
        try:
            rt.proc = await process.spawn(
                command, env=env, cwd=cwd, log_fd=rt.log_fd, run_as=run_as
            )
        except OSError as exc:
            raise ServiceFailed(p.name, f"could not be started: {exc}") from None
        report.pid = rt.proc.pid
        rt.started = compat.start_time(rt.proc.pid)
        self._rundir.add_process(
            p.name, rt.proc.pid, rt.started, p.spec.stop_signal, p.spec.stop_timeout
        )
        self._preload()
        fatal = self._fatal_lines(rt)
        try:
            if p.spec.kind == "task":
                await self._finish_task(rt, began, deadline, fatal)
                return
            await self._until_ready(rt, env, cwd, deadline, fatal)
            if rt.cluster is not None:
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                        await rt.cluster.finish_start(rt.log_fd, env)
                except TimeoutError:
                    raise ServiceFailed(
                        p.name, f"init files did not finish within {p.spec.ready_timeout:g}s"
                    ) from None
        except BaseException:
            if fatal is not None:
                fatal.cancel()
            raise
        report.ready_after_s = time.monotonic() - self.started_at
        self.reporter.event(p.name, "ready", f"{report.ready_after_s:.2f}s")
        rt.ready.set()
        self._spawn_bg(self._watchers, self._watch(rt))
        if fatal is not None:
            self._spawn_bg(self._watchers, self._watch_fatal(rt, fatal))

    def _fatal_lines(self, rt: _Runtime) -> asyncio.Task[bytes] | None:
        """`fail.log`: the first line of the service's log that a fail regex finds, from
        the log's start (so nothing written before this is missed); None without one."""
        patterns = rt.planned.spec.fail.patterns
        if not patterns:
            return None
        compiled = [re.compile(pattern.encode()) for pattern in patterns]
        return asyncio.create_task(logs.first_match(rt.planned.log_path, compiled), name=FATAL)

    @staticmethod
    def _fatal_reason(rt: _Runtime, line: bytes) -> str:
        """Which fail.log regex found which line, the line quoted (cut to one screen line)."""
        patterns = rt.planned.spec.fail.patterns
        pattern = next((p for p in patterns if re.search(p.encode(), line)), patterns[0])
        text = line.decode("utf-8", "replace").strip()
        if len(text) > FATAL_QUOTE:
            text = text[: FATAL_QUOTE - 1] + "…"
        return f"printed a fatal line (fail.log {pattern!r}): {text!r}"

    async def _race(
        self, rt: _Runtime, racers: set[asyncio.Task[object]], deadline: float
    ) -> set[asyncio.Task[object]]:
        """The racers done by `deadline` (all but a fail.log follower are cancelled)."""
        try:
            done, _ = await asyncio.wait(
                racers,
                timeout=max(deadline - time.monotonic(), 0.001),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            helpers = [task for task in racers if task.get_name() != FATAL]
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        for task in done:
            if task.get_name() == FATAL:
                raise ServiceFailed(
                    rt.planned.name, self._fatal_reason(rt, typing.cast(bytes, task.result()))
                )
        return done

    async def _until_ready(
        self,
        rt: _Runtime,
        env: Mapping[str, str],
        cwd: Path,
        deadline: float,
        fatal: asyncio.Task[bytes] | None,
    ) -> None:
        """The probe passes; the process exiting, a fail.log line or the deadline
        coming first is ServiceFailed."""
        p, report = rt.planned, rt.report
        assert rt.proc is not None
        what = probes.describe(p.ready, p.host, p.port)
        self.reporter.event(p.name, "started", f"pid {rt.proc.pid}, waiting for {what}")
        probe: asyncio.Task[object] = asyncio.create_task(self._wait_ready(rt, env, cwd))
        exited: asyncio.Task[object] = asyncio.create_task(rt.proc.wait())
        racers = {probe, exited, *([fatal] if fatal is not None else [])}
        done = await self._race(rt, racers, deadline)
        if probe in done and not probe.cancelled() and probe.exception() is None:
            return
        if exited in done:
            report.ended = time.monotonic()
            report.exit_code = process.exit_status(rt.proc.returncode)
            raise ServiceFailed(
                p.name, f"{process.describe_exit(rt.proc.returncode)} before it was ready"
            )
        if probe in done:
            error = probe.exception()
            if isinstance(error, ServiceFailed):
                raise error
            raise ServiceFailed(p.name, f"readiness probe failed: {error!r}")
        raise ServiceFailed(
            p.name,
            f"was not ready after {p.spec.ready_timeout:g}s (ready_timeout; waited for {what})",
        )

    async def _finish_task(
        self, rt: _Runtime, began: float, deadline: float, fatal: asyncio.Task[bytes] | None
    ) -> None:
        """kind = "task": ready once it exits 0. Its later absence is its success, so no
        death watch; its fail.log lines are still watched."""
        p, report = rt.planned, rt.report
        assert rt.proc is not None
        self.reporter.event(p.name, "started", f"pid {rt.proc.pid}, waiting for it to finish")
        exited: asyncio.Task[object] = asyncio.create_task(rt.proc.wait())
        racers = {exited, *([fatal] if fatal is not None else [])}
        await self._race(rt, racers, deadline)
        if rt.proc.returncode is None:
            raise ServiceFailed(
                p.name,
                f"did not finish within {p.spec.ready_timeout:g}s (ready_timeout); stopped it",
            )
        report.ended = time.monotonic()
        report.exit_code = process.exit_status(rt.proc.returncode)
        if rt.proc.returncode != 0:
            raise ServiceFailed(
                p.name, f"{process.describe_exit(rt.proc.returncode)} (a task must exit 0)"
            )
        now = time.monotonic()
        report.duration_s = now - began
        report.ready_after_s = now - self.started_at
        self.reporter.event(p.name, "completed", f"in {report.duration_s:.2f}s")
        self._rundir.forget_process(rt.proc.pid)
        rt.ready.set()
        if fatal is not None:
            self._spawn_bg(self._watchers, self._watch_fatal(rt, fatal))

    async def _wait_ready(self, rt: _Runtime, env: Mapping[str, str], cwd: Path) -> None:
        """The readiness probe, then proof that the server on the service's port is the
        service's own: a port free when the plan was made can be taken by another
        program before the service binds it, and the probe would get its answer."""
        p = rt.planned
        assert rt.proc is not None
        leader = rt.proc.pid
        while True:
            await probes.wait_ready(
                p.ready, host=p.host, port=p.port, log_path=p.log_path, env=env, cwd=cwd
            )
            if p.port is None:
                return
            found = listeners.whose(
                probes.probe_host(p.host),
                p.port,
                leader,
                lambda: [proc.pid for proc in owned.marked(self.mark, p.name)],
            )
            if found.state == "foreign":
                who = ", ".join(found.holders) or (
                    "a process conductor cannot see (another user's, or another container's)"
                )
                raise ServiceFailed(
                    p.name,
                    f"was not the one answering on port {p.port}: {who} holds it, so COMMAND "
                    "would have talked to that instead; stop it, or pass --auto-ports",
                )
            if found.state != "nobody" or not _knocks_on_port(p.ready):
                return
            # The listener went away between the probe's connection and our look.
            await asyncio.sleep(probes.POLL)

    async def _reuse(self, rt: _Runtime, deadline: float) -> None:
        p = rt.planned
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                await probes.wait_ready(
                    p.ready,
                    host=p.host,
                    port=p.port,
                    log_path=p.log_path,
                    env=dict(os.environ),
                    cwd=p.cwd,
                )
        except TimeoutError:
            raise ServiceFailed(
                p.name,
                f"port {p.port} is taken (reuse_existing) but what holds it did not pass "
                f"its readiness probe ({probes.describe(p.ready, p.host, p.port)})",
            ) from None
        rt.report.status = "reused"
        rt.report.ready_after_s = time.monotonic() - self.started_at
        self.reporter.event(p.name, "reused", f"already answering on port {p.port}")
        rt.ready.set()

    async def _watch(self, rt: _Runtime) -> None:
        assert rt.proc is not None
        await rt.proc.wait()
        rt.report.ended = time.monotonic()
        if self._stopping or self._killed or rt.planned.name in self.died:
            return
        rt.report.exit_code = process.exit_status(rt.proc.returncode)
        self._died(rt, f"{process.describe_exit(rt.proc.returncode)} while the command ran")

    async def _watch_fatal(self, rt: _Runtime, fatal: asyncio.Task[bytes]) -> None:
        """fail.log after readiness: a matching line fails the run as a death does."""
        try:
            line = await fatal
        finally:
            fatal.cancel()
        if not self._stopping and rt.planned.name not in self.died:
            self._died(rt, self._fatal_reason(rt, line))

    def _died(self, rt: _Runtime, reason: str) -> None:
        """A ready service is gone or broken: say so with its log tail, and wake the
        runner, which stops COMMAND (or, with --keep-going, lets it finish)."""
        rt.report.status = "failed"
        self.died.append(rt.planned.name)
        self.reporter.failure(rt.planned.name, reason, rt.planned.log_path)
        self.died_event.set()

    async def _echo(self, rt: _Runtime) -> None:
        """--show-logs for one service, until teardown is over and its log is read to
        the end, or ECHO_DRAIN after that (then it says where the rest is)."""
        p = rt.planned
        follow = logs.follow(p.log_path, stop=lambda: self._stopped)
        try:
            async with contextlib.aclosing(follow) as batches:
                async for batch in batches:
                    self.reporter.log_lines(p.name, batch)
        except asyncio.CancelledError:
            self.reporter.info(
                f"{p.name}: --show-logs stops here, {ECHO_DRAIN:g}s after teardown; "
                f"the whole log is {p.log_path}"
            )
            raise

    @staticmethod
    def _spawn_bg(tasks: set[asyncio.Task[None]], coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # stop -----------------------------------------------------------------------
    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL every service group and marked process at once."""
        self._killed = True
        kill.kill_now(kill.Targets(self.mark, leaders=self._leaders()))

    def _leaders(self) -> list[kill.Leader]:
        return [
            kill.Leader(rt.proc.pid, rt.started, group=True, child=rt.proc)
            for rt in self.runtimes.values()
            if rt.proc is not None
        ]

    async def stop(self) -> None:
        """Stop every service, dependents first; idempotent; never leaves a process."""
        if self._stopped or not self._locked:
            return
        self._stopping = True
        try:
            tasks: dict[str, asyncio.Task[None]] = {}

            async def stop_one(name: str) -> None:
                dependents = [
                    tasks[n] for n, rt in self.runtimes.items() if name in rt.planned.depends_on
                ]
                await asyncio.gather(*dependents, return_exceptions=True)
                await self._stop_service(self.runtimes[name])

            for name in reversed(list(self.runtimes)):
                tasks[name] = asyncio.create_task(stop_one(name))
            await asyncio.gather(*tasks.values())
            # What escaped its service's group: marked strays of any service or COMMAND,
            # and (the CLI only) adopted orphans. Services are asyncio's to reap.
            exclude = {rt.proc.pid for rt in self.runtimes.values() if rt.proc is not None}
            exclude |= reaper.own_pids()  # the watchdog included: it is no stray
            if self._watchdog is not None:
                exclude.add(self._watchdog.pid)
            sweep = kill.Targets(self.mark, subreaper=self.subreaper, exclude=exclude)
            found = (await kill.stop(sweep, signal.SIGKILL, kill.KILL_WAIT, describe=True)).found
            if found:
                self.reporter.warning(
                    f"killed {len(found)} leftover process(es) that escaped their service's "
                    "process group: " + "; ".join(found)
                )
        finally:
            self._stopped = True
            for task in self._watchers:
                task.cancel()
            await asyncio.gather(*self._watchers, return_exceptions=True)
            await self._drain_echoes()
            self._release()

    async def _drain_echoes(self) -> None:
        """Echo tasks see _stopped, print what is left of each log, and end; a service
        that wrote faster than the console could show gets ECHO_DRAIN, not a say in how
        long teardown takes."""
        echoes = list(self._echoes)
        if not echoes:
            return
        _, late = await asyncio.wait(echoes, timeout=ECHO_DRAIN)
        for task in late:
            task.cancel()
        await asyncio.gather(*echoes, return_exceptions=True)

    async def _stop_service(self, rt: _Runtime) -> None:
        p, report = rt.planned, rt.report
        try:
            if rt.proc is None:
                return
            report.stop_began = time.monotonic()
            result = await process.stop_service(
                rt.proc,
                started=rt.started,
                mark=self.mark,
                service=p.name,
                stop_signal=p.spec.stop_signal,
                timeout=p.spec.stop_timeout,
                killed=self._killed,
            )
            report.record_stop(result)
            if result.forced and not self._killed:
                self.reporter.warning(
                    f"service '{p.name}' ignored {p.spec.stop_signal.name} for "
                    f"{p.spec.stop_timeout:g}s (stop_timeout) and was killed with SIGKILL"
                )
            else:
                logs.logger.info("%s: %s in %.3fs", p.name, result.how, result.seconds)
        finally:
            if rt.cluster is not None:
                await rt.cluster.remove()
            if rt.log_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(rt.log_fd)
                rt.log_fd = None

    def _release(self) -> None:
        if self._watchdog is not None:
            # Everything is stopped: the watchdog goes before the lock it shares.
            self._watchdog.dismiss()
            self._watchdog = None
        if self._reaper is not None:
            self._reaper.reap()  # the last orphans of the sweep, if SIGCHLD is still queued
            self._reaper.uninstall()
            self._reaper = None
        if self._log_handler is not None:
            logs.close_event_log(self._log_handler)  # type: ignore[arg-type]
            self._log_handler = None
        if self._locked:
            runfolders.finish(self.logs_dir, self.run_id)
            self._rundir.release()
            self._locked = False
