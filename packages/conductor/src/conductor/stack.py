"""A running set of services: started in parallel in dependency order, watched while the
command runs, and always stopped in reverse order, leaving nothing behind.

    async with Stack(load_config(), ["backend"], auto_ports=True) as stack:
        status = await stack.run(["pytest", "tests/e2e"])
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from conductor import environment
from conductor.config.loading import Config
from conductor.environment import Address
from conductor.errors import ConductorError, ServiceFailed
from conductor.files import logs, masking
from conductor.logs_folder import LogsFolder
from conductor.plan import Plan, check_ports, make_plan
from conductor.process import kill, ownership, reaper
from conductor.process.kill import shielded
from conductor.process.subreaper import Subreaper
from conductor.report.console import Reporter, ServiceReport
from conductor.rundir.run_record import RunDir
from conductor.service import ECHO_DRAIN, Preload, RunContext, ServiceLife, Teardown

if TYPE_CHECKING:
    from conductor.report import summary


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
        hold_until_closed: bool = False,
        keep_logs: int | None = None,
    ) -> None:
        self.config = config
        # The caller writes the run's summary: stop() keeps the logs folder (its lock and
        # conductor.log) until close(record), so that nothing of this run is written
        # after another run may have taken the folder.
        self.hold_until_closed = hold_until_closed
        self.request_env = dict(command_env or {})  # --env: COMMAND's REQUEST layer
        self.names = services
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
        # keep_logs (--keep-logs): None is the configuration's [run].keep_logs.
        self._folder = LogsFolder(
            config,
            logs_dir,
            self.reporter,
            self.run_id,
            subfolder_if_busy=subfolder_if_busy,
            keep_logs=keep_logs,
        )
        self.plan: Plan | None = None
        self.services: dict[str, ServiceLife] = {}  # the started set, in start order
        self.died: list[str] = []
        self.died_event = asyncio.Event()
        self.started_at = time.monotonic()
        self.started_time = time.time()  # the same moment by the wall clock: runs/ names
        self.ready_at: float | None = None
        self.leftovers: list[str] = []
        self.skipped: dict[str, ServiceReport] = {}
        self._teardown = Teardown()
        self._preload = Preload(http=False)  # made again once the folder is ours
        self._used = False
        self._reaper: reaper.Reaper | None = None

    # public view ----------------------------------------------------------------
    @property
    def reports(self) -> dict[str, ServiceReport]:
        """Every service of the run, those skipped as optional included."""
        return {**{name: s.report for name, s in self.services.items()}, **self.skipped}

    @property
    def urls(self) -> dict[str, str]:
        return {n: s.planned.url for n, s in self.services.items() if s.planned.url}

    @property
    def addresses(self) -> dict[str, Address]:
        """Host, port and url of every running (ready or reused) service."""
        return {
            name: Address(s.planned.host, s.planned.port, s.planned.url)
            for name, s in self.services.items()
            if s.report.status in ("ready", "reused")
        }

    @property
    def env(self) -> dict[str, str]:
        """NAME_HOST, NAME_PORT and NAME_URL for every running service."""
        return environment.address_env(self.addresses)

    @property
    def logs_dir(self) -> Path:
        """The run's logs folder: a run-PID subfolder of the configured one when that
        was busy (final once the start has claimed it)."""
        return self._folder.path

    @property
    def kept(self) -> Path | None:
        """--keep-logs: the folder in runs/ this run's files are kept in, once it is over."""
        return self._folder.kept

    @property
    def rundir(self) -> RunDir:
        """The logs folder's lock and run record (`conductor up` publishes itself there)."""
        return self._folder.rundir

    @property
    def mark(self) -> ownership.Mark:
        """What every process of this run carries (the logs folder is final once locked)."""
        return ownership.Mark(self.run_id, str(self.logs_dir))

    def exported_env(self) -> dict[str, str]:
        """What the pytest process's environment gets over its own (no mark: it is
        not one of the run's processes), for its workers to inherit."""
        return self._command_env(self.logs_dir).added()

    def _command_env(self, run: ownership.Mark | Path) -> environment.Environment:
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
        from conductor.process.command import Command

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
        # A stopped Stack keeps its teardown `over`, so a second start would bring up
        # services that its stop() then never stops: refuse instead.
        if self._used:
            raise ConductorError(
                "this Stack has already been started once; create a new Stack for each "
                "`async with` (or start())"
            )
        self._used = True
        self.started_at, self.started_time = time.monotonic(), time.time()
        # Everything the file alone can get wrong fails here, before the logs folder is
        # touched; ports are checked below, once a killed run's leftovers are gone.
        unchecked = self._plan()
        self._folder.check_runs()
        self._folder.claim(unchecked.written)
        self._preload = Preload(http=False, then=self._folder.prune)  # http: set for the plan
        if self.logs_dir != unchecked.logs_dir:
            # Busy: this run logs to a run-PID subfolder, which every log path and
            # {logs_dir} names; the only start that plans again.
            unchecked = self._plan()
        self._adopt_orphans()
        plan = await self._clear_and_check(unchecked)
        self._begin_record()
        self._preload.http = any(p.ready.kind == "http" for p in plan.services.values())
        run = RunContext(
            self.mark,
            self._folder.rundir,
            self.reporter,
            self.started_at,
            self._teardown,
            spawned=self._preload,
            died=self._died,
        )
        self.services = {name: ServiceLife(p, run) for name, p in plan.services.items()}
        self.reporter.track(self.reports)
        if self.show_logs:
            for service in self.services.values():
                service.start_echo()
        await self._bring_all_up()
        self._preload.settle()  # the prune, when nothing was spawned (all reused or skipped)
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
            if self._folder.locked:
                self._release()
            raise

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
            earlier = await self._folder.rundir.stop_leftovers()
            self.leftovers = earlier.stopped
            if self.leftovers:
                self.reporter.warning(
                    f"stopped {len(self.leftovers)} process(es) left by an earlier run in "
                    f"{self.logs_dir}: " + "; ".join(map(masking.mask, self.leftovers))
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
            self._folder.begin_record(self.mark)
        except OSError as exc:
            self._release()
            raise self._folder.unusable(exc) from None

    async def _bring_all_up(self) -> None:
        """Every service's start at once (each waits for its dependencies); the first
        failure cancels the rest and stops what started."""
        tasks = {
            name: asyncio.create_task(self._bring_up(service), name=f"start {name}")
            for name, service in self.services.items()
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
                failed = self.services.get(exc.service)
                if failed is not None:
                    failed.report.status = "failed"
                self.reporter.failure(
                    exc.service, exc.reason, failed.planned.log_path if failed else None
                )
            await shielded(self.stop())
            raise

    async def _bring_up(self, service: ServiceLife) -> None:
        """One service's start, once every service it depends on is ready."""
        depends_on = service.planned.depends_on
        try:
            if depends_on:
                self.reporter.event(service.name, "waiting", "for " + ", ".join(depends_on))
                await asyncio.gather(*(self.services[d].ready.wait() for d in depends_on))
            await service.start()
        except asyncio.CancelledError:
            # Another service failed (or Ctrl-C) while this one was on its way.
            service.report.status = "not ready" if service.proc is not None else "not started"
            raise

    def _died(self, name: str) -> None:
        """A ready service is gone or broken (ServiceLife said so): wake the runner."""
        self.died.append(name)
        self.died_event.set()

    # stop -----------------------------------------------------------------------
    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL every service group and marked process at once."""
        self._teardown.killed = True
        leaders = [s.leader() for s in self.services.values()]
        kill.kill_now(kill.Targets(self.mark, leaders=[lead for lead in leaders if lead]))

    async def stop(self) -> None:
        """Stop every service, dependents first; idempotent; never leaves a process."""
        if self._teardown.over or not self._folder.locked:
            return
        self._teardown.stopping = True
        try:
            leaders = {s.proc.pid for s in self.services.values() if s.proc is not None}
            await self._stop_services(leaders)
            with logs.step("swept for processes that escaped their service's group") as notes:
                found = await self._sweep(leaders)
                notes.append(f"{len(found)} found" if found else "none found")
            if found:
                self.reporter.warning(
                    f"killed {len(found)} leftover process(es) that escaped their service's "
                    "process group: " + "; ".join(map(masking.mask, found))
                )
        finally:
            self._teardown.over = True
            with logs.step("ended the log followers") as notes:
                watchers = {
                    *self._preload.tasks,
                    *(t for s in self.services.values() for t in s.watchers),
                }
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
                notes.append(await self._drain_echoes())
            self._finish_teardown()
            if self.plan is not None:
                self._folder.begin_keep(self.started_time)
            if not self.hold_until_closed:
                self.close()

    async def _stop_services(self, leaders: set[int]) -> None:
        """Every service's stop, dependents first."""
        tasks: dict[str, asyncio.Task[None]] = {}
        # One /proc scan per teardown: one per service made 500 stops overrun theirs.
        with logs.step("scanned /proc for the services' strays") as notes:
            strays = ownership.marked_by_service(self.mark, leaders | reaper.own_pids())
            notes.append(f"{sum(map(len, strays.values()))} found")

        async def stop_one(name: str) -> None:
            dependents = [
                tasks[n] for n, s in self.services.items() if name in s.planned.depends_on
            ]
            await asyncio.gather(*dependents, return_exceptions=True)
            await self.services[name].stop(strays.get(name, []))

        with logs.step(f"stopped {len(self.services)} service(s)"):
            for name in reversed(list(self.services)):
                tasks[name] = asyncio.create_task(stop_one(name))
            await asyncio.gather(*tasks.values())

    async def _sweep(self, leaders: set[int]) -> list[str]:
        """What escaped its service's group: marked strays of any service or COMMAND,
        and (the CLI only) adopted orphans, killed. Services are asyncio's to reap."""
        exclude = leaders | reaper.own_pids()  # the watchdog included: it is no stray
        if self._folder.watchdog is not None:
            exclude.add(self._folder.watchdog.pid)
        sweep = kill.Targets(self.mark, subreaper=self.subreaper, exclude=exclude)
        return (await kill.stop(sweep, signal.SIGKILL, kill.KILL_WAIT, describe=True)).found

    async def _drain_echoes(self) -> str:
        """Echo tasks see the teardown over, print what is left of each log, and end; a service
        that wrote faster than the console could show gets ECHO_DRAIN, not a say in how
        long teardown takes. What happened, for conductor.log."""
        echoes = [s.echo for s in self.services.values() if s.echo is not None]
        if not echoes:
            return "no --show-logs"
        _, late = await asyncio.wait(echoes, timeout=ECHO_DRAIN)
        for task in late:
            task.cancel()
        await asyncio.gather(*echoes, return_exceptions=True)
        if late:
            return f"--show-logs of {len(late)} service(s) cut after {ECHO_DRAIN:g}s"
        return "--show-logs caught up"

    def _finish_teardown(self) -> None:
        """Nothing of the run is left: the watchdog and the orphan reaper go."""
        self._preload.settle()  # the prune, if a start that failed before a spawn owes it
        self._folder.dismiss_watchdog()
        if self._reaper is not None:
            self._reaper.reap()  # the last orphans of the sweep, if SIGCHLD is still queued
            self._reaper.uninstall()
            self._reaper = None

    def _release(self) -> None:
        """A start that failed before any service: let go of everything at once."""
        self._finish_teardown()
        self.close()

    def close(self, record: summary.Summary | None = None, *, table: bool = True) -> None:
        """The run's last step, after stop(): its summary.json and report.html (from
        `record`, when the run got as far as a plan; then the closing table, with
        `table`), then the logs folder is let go (conductor.log closed, the lock
        released). stop() calls it itself unless the Stack was made with
        hold_until_closed. Idempotent."""
        if self.plan is None:
            self._folder.close(None, table=table)
            return
        service_logs = [s.planned.log_path for s in self.services.values()]
        self._folder.close(record, table=table, keep=service_logs)
