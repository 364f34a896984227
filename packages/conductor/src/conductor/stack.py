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

from conductor import environment
from conductor.config.loading import Config
from conductor.environment import Address
from conductor.errors import ConductorError, ConfigError, LogsDirBusy, ServiceFailed
from conductor.files import logs, masking, safe_io
from conductor.plan import Plan, check_ports, make_plan
from conductor.process import kill, ownership, portable, reaper
from conductor.process.kill import shielded
from conductor.process.subreaper import Subreaper
from conductor.report.console import Reporter, ServiceReport
from conductor.rundir import runfolders, watchdog
from conductor.rundir.run_record import RunDir
from conductor.service import ECHO_DRAIN, Preload, RunContext, ServiceLife, Teardown


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
        self.services: dict[str, ServiceLife] = {}  # the started set, in start order
        self.died: list[str] = []
        self.died_event = asyncio.Event()
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.leftovers: list[str] = []
        self.skipped: dict[str, ServiceReport] = {}
        self._rundir = RunDir(self.logs_dir)
        self._locked = False
        self._teardown = Teardown()
        self._preload = Preload(http=False)  # made again once the folder is ours
        self._used = False
        self._log_handler: object | None = None
        self._reaper: reaper.Reaper | None = None
        self._watchdog: watchdog.Watchdog | None = None

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
    def rundir(self) -> RunDir:
        """The logs folder's lock and run record (`conductor up` publishes itself there)."""
        return self._rundir

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

    def _tidy(self) -> None:
        """Preload's `then`: the last run's reports go, then old run-PID subfolders."""
        from conductor.report import summary  # only now: the first spawn need not wait

        found = (summary.forget(self.logs_dir), runfolders.prune(self._base_logs_dir))
        for problem in filter(None, (found[0], found[1].warning())):
            self.reporter.warning(problem)

    def _unusable_logs_dir(self, exc: OSError) -> ConfigError:
        """One line for a logs folder that is a file, lies under a file, or is not
        writable: which folder, what is wrong, and where it was configured."""
        message = (
            f"cannot use {self.logs_dir} as the logs folder "
            f"({safe_io.why_unusable(self.logs_dir, exc)}); "
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
        self.started_at = time.monotonic()
        # Everything the file alone can get wrong fails here, before the logs folder is
        # touched; ports are checked below, once a killed run's leftovers are gone.
        unchecked = self._plan()
        self._claim_logs_dir()
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
            self._rundir,
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
        self._preload.settle()  # _tidy, when nothing was spawned (all reused or skipped)
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
        self._preload = Preload(http=False, then=self._tidy)  # http: set for the plan

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
            self._rundir.begin(self.mark)
        except OSError as exc:
            self._release()
            raise self._unusable_logs_dir(exc) from None
        self._watchdog = watchdog.start(self.logs_dir, self.run_id, self._rundir.lock_fd)
        if self._watchdog is not None:
            logs.logger.debug("watchdog: pid %d", self._watchdog.pid)
            self._rundir.tell = self._watchdog.tell
        elif not portable.WINDOWS:
            logs.logger.warning("watchdog: could not be started; if conductor dies, run clean")

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
        if self._teardown.over or not self._locked:
            return
        self._teardown.stopping = True
        try:
            tasks: dict[str, asyncio.Task[None]] = {}
            # One /proc scan per teardown: one per service made 500 stops overrun theirs.
            leaders = {s.proc.pid for s in self.services.values() if s.proc is not None}
            strays = ownership.marked_by_service(self.mark, leaders | reaper.own_pids())

            async def stop_one(name: str) -> None:
                dependents = [
                    tasks[n] for n, s in self.services.items() if name in s.planned.depends_on
                ]
                await asyncio.gather(*dependents, return_exceptions=True)
                await self.services[name].stop(strays.get(name, []))

            for name in reversed(list(self.services)):
                tasks[name] = asyncio.create_task(stop_one(name))
            await asyncio.gather(*tasks.values())
            # What escaped its service's group: marked strays of any service or COMMAND,
            # and (the CLI only) adopted orphans. Services are asyncio's to reap.
            exclude = leaders | reaper.own_pids()  # the watchdog included: it is no stray
            if self._watchdog is not None:
                exclude.add(self._watchdog.pid)
            sweep = kill.Targets(self.mark, subreaper=self.subreaper, exclude=exclude)
            found = (await kill.stop(sweep, signal.SIGKILL, kill.KILL_WAIT, describe=True)).found
            if found:
                self.reporter.warning(
                    f"killed {len(found)} leftover process(es) that escaped their service's "
                    "process group: " + "; ".join(map(masking.mask, found))
                )
        finally:
            self._teardown.over = True
            watchers = {
                *self._preload.tasks,
                *(t for s in self.services.values() for t in s.watchers),
            }
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self._drain_echoes()
            self._release()

    async def _drain_echoes(self) -> None:
        """Echo tasks see the teardown over, print what is left of each log, and end; a service
        that wrote faster than the console could show gets ECHO_DRAIN, not a say in how
        long teardown takes."""
        echoes = [s.echo for s in self.services.values() if s.echo is not None]
        if not echoes:
            return
        _, late = await asyncio.wait(echoes, timeout=ECHO_DRAIN)
        for task in late:
            task.cancel()
        await asyncio.gather(*echoes, return_exceptions=True)

    def _release(self) -> None:
        self._preload.settle()  # _tidy, if a start that failed before a spawn owes it
        self._rundir.tell = None
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
