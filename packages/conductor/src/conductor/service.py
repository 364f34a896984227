"""One service's life in a run, from spawn to stop: its start_stop, its log, its readiness
race (the probe against the process exiting, a `fail.log` line and the deadline), the
watch while COMMAND runs, the --show-logs echo, and its stop.

A ServiceLife knows nothing of the other services: the Stack (stack.py) keeps the set,
starts each once its dependencies are ready, and stops them in reverse order. What the
services of a run share (its mark, record, reporter, and how far its teardown is) is
one RunContext, made by the Stack once its logs folder is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conductor import environment, probes
from conductor.config.loading import ReadySpec
from conductor.errors import ServiceFailed
from conductor.files import logs, masking
from conductor.plan import PlannedService
from conductor.process import kill, ownership, portable, start_stop
from conductor.report.console import Reporter, ServiceReport
from conductor.rundir.run_record import RunDir

# Imported where used, not before the first spawn, which every run waits for:
# conductor.container for kind = "container", conductor.postgres.clusters for
# kind = "postgres", conductor.process.listeners once a probe has passed (Preload
# loads it meanwhile, in its thread).
if typing.TYPE_CHECKING:
    import psutil

    from conductor import container
    from conductor.postgres import clusters

FATAL = "fail.log"  # the name of a service's fail.log follower task
FATAL_QUOTE = 300  # the most of a fatal line a failure quotes
# After teardown, how long --show-logs may go on printing what services wrote before.
ECHO_DRAIN = 2.0
# After a fatal line, the failure waits for the service to finish saying why (a
# traceback's last line is the one that explains it) before its tail is read: until it
# exits, or its log has not grown for SETTLE_QUIET; never longer than SETTLE_MAX.
SETTLE_QUIET = 0.5
SETTLE_MAX = 2.0
_SETTLE_POLL = 0.02


@dataclass
class Teardown:
    """How far the run's end has come. The Stack moves it on; a service reads it to
    tell being stopped from dying, and its echo to know when the log is complete."""

    stopping: bool = False  # stop() has begun: a service ending now is no death
    killed: bool = False  # kill_now: every service got conductor's SIGKILL
    over: bool = False  # every service is stopped


@dataclass(frozen=True)
class RunContext:
    """What the services of one run share, fixed once its logs folder is."""

    mark: ownership.Mark
    rundir: RunDir
    reporter: Reporter
    started_at: float  # the run's start (monotonic): ready_after_s counts from it
    teardown: Teardown
    spawned: Callable[[], None]  # called after each spawn (the Stack's preload)
    died: Callable[[str], None]  # a ready service is gone or broken: wake the runner


class Preload:
    """Import aiohttp (~0.3 s, for HTTP probes), the listener check (once a probe has
    passed), psutil (for teardown) and report.html's drawer (for the end) in a thread,
    once the first service is spawned (called after each spawn): earlier, the import
    would hold the GIL while we fork, and delay the spawn; later, a probe, the teardown
    or the run's end would wait for it. `then` is the start's own work that no service
    waits for (LogsFolder.prune, of old run-PID subfolders): called once, at the loop's
    turn after the first spawn (the other services' spawns come first), or by settle()
    if none came."""

    def __init__(self, *, http: bool, then: Callable[[], None] | None = None) -> None:
        self.http = http  # whether any service of the plan has an HTTP probe
        self.tasks: set[asyncio.Task[None]] = set()
        self._begun = False
        self._then = then

    def settle(self) -> None:
        """Call `then` now, unless it has been already."""
        then, self._then = self._then, None
        if then is not None:
            then()

    def __call__(self) -> None:
        if self._begun:
            return
        self._begun = True
        if self._then is not None:
            asyncio.get_running_loop().call_soon(self.settle)
        task = asyncio.create_task(asyncio.to_thread(self._load))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _load(self) -> None:
        if self.http:
            probes.preload_http()
        from conductor.process import listeners  # noqa: F401  (lands in sys.modules)

        start_stop.preload()
        from conductor.report import summary

        summary.preload()


def _knocks_on_port(ready: ReadySpec) -> bool:
    """Whether the probe passes only by connecting to the service's own port."""
    if ready.kind == "tcp":
        return True
    return ready.kind == "http" and "://" not in str(ready.target or "")


class ServiceLife:
    """One planned service of a run: `start()` brings it up (or raises ServiceFailed),
    `stop()` ends it and everything it became. `ready` is set once it is ready, reused
    or completed, for the services that depend on it."""

    def __init__(self, planned: PlannedService, run: RunContext) -> None:
        self.planned = planned
        self.run = run
        self.report = ServiceReport(
            name=planned.name,
            host=planned.host,
            port=planned.port,
            url=planned.url,
            log=str(planned.log_path),
        )
        self.ready = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.started: float | None = None  # the start time, as portable.start_time gives it
        self.log_fd: int | None = None
        self.cluster: clusters.Cluster | None = None
        self.engine: container.Engine | None = None  # kind = "container"
        self.request: container.RunRequest | None = None
        self.dead = False  # failed after it was ready (said once)
        self.watchers: set[asyncio.Task[None]] = set()
        self.echo: asyncio.Task[None] | None = None
        self.fatal: asyncio.Task[bytes] | None = None  # the fail.log follower
        self.log_from = 0  # where this attempt's lines start in its log (see _fall_back)

    @property
    def name(self) -> str:
        return self.planned.name

    def leader(self) -> kill.Leader | None:
        """Its start_stop, as teardown and a second Ctrl-C signal it (with its group)."""
        if self.proc is None:
            return None
        return kill.Leader(self.proc.pid, self.started, group=True, child=self.proc)

    # start ----------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn it (after initdb, for PostgreSQL) and wait until it is ready; whatever
        comes first instead is ServiceFailed. Its dependencies are ready already."""
        p, report = self.planned, self.report
        began = time.monotonic()
        deadline = began + p.spec.ready_timeout
        if p.reuse:
            await self._reuse(deadline)
            return
        env, cwd = await self._spawn(deadline)
        self._launched()
        self.fatal = self._fatal_lines()
        try:
            if p.spec.kind == "task":
                await self._finish_task(began, deadline, self.fatal)
                return
            deadline = await self._until_usable(env, cwd, deadline)
            if self.cluster is not None:
                await self._within(
                    deadline,
                    self.cluster.finish_start(self._log_fd(), env, p.log_path),
                    f"init files did not finish within {p.spec.ready_timeout:g}s",
                )
        except BaseException:
            if self.fatal is not None:
                self.fatal.cancel()
            raise
        report.ready_after_s = time.monotonic() - self.run.started_at
        self.run.reporter.event(p.name, "ready", f"{report.ready_after_s:.2f}s")
        self.ready.set()
        self._background(self._watch())
        if self.fatal is not None:
            self._background(self._watch_fatal(self.fatal))

    def _launched(self) -> None:
        """Its process, just spawned, in the report and in the run record (the
        watchdog and clean stop it from there)."""
        p = self.planned
        assert self.proc is not None
        self.report.pid = self.proc.pid
        self.started = portable.start_time(self.proc.pid)
        self.run.rundir.add_process(
            p.name, self.proc.pid, self.started, p.spec.stop_signal, p.spec.stop_timeout
        )
        self.run.spawned()

    async def _until_usable(self, env: dict[str, str], cwd: Path, deadline: float) -> float:
        """Ready (a cluster's database proven to open, in _wait_ready); the deadline
        that holds then. A cluster from the template cache that fails before that falls
        back, once, to a fresh initdb, which replaces the cache entry: a damaged entry
        costs one run an initdb, never the run. The second attempt has a deadline of
        its own (ready_timeout again), as the first may have spent all of its."""
        try:
            await self._until_ready(env, cwd, deadline, self.fatal)
            return deadline
        except ServiceFailed as failed:
            if self.cluster is None or not self.cluster.from_cache:
                raise
            reason = failed.reason
        deadline = await self._fall_back(reason, env, cwd)
        await self._until_ready(env, cwd, deadline, self.fatal)
        return deadline

    async def _fall_back(self, reason: str, env: dict[str, str], cwd: Path) -> float:
        """Say it (conductor.log, the console and the service's log), stop the failed
        server, refill data/ by initdb and start the server again; the new deadline."""
        p, cluster, log_fd = self.planned, self.cluster, self._log_fd()
        assert cluster is not None
        assert self.proc is not None
        said = (
            f"{p.name}: falling back, once, to a fresh initdb, which replaces the cache "
            f"entry: the cluster from the template cache {reason}"
        )
        self.run.reporter.info(said)
        os.write(log_fd, f"conductor: {said}\n".encode())
        if self.fatal is not None:
            self.fatal.cancel()
        result = await self._stop_leader()
        logs.logger.info("%s: the failed server %s in %.3fs", p.name, result.how, result.seconds)
        self.run.rundir.forget_process(self.proc.pid)
        self.proc = None
        self.report.ended = self.report.exit_code = None  # the first attempt's, not its
        # The second attempt's readiness and fail.log lines are its own, after this line.
        self.log_from = os.fstat(log_fd).st_size
        self.fatal = self._fatal_lines()
        deadline = time.monotonic() + p.spec.ready_timeout
        await self._within(deadline, cluster.refill(log_fd, env), "timed out in initdb")
        from conductor.postgres import clusters  # a postgres service's own fallback

        await self._launch(cluster.command(), env, cwd, clusters.run_as())
        self._launched()
        return deadline

    def _log_fd(self) -> int:
        assert self.log_fd is not None
        return self.log_fd

    async def _within(self, deadline: float, work: Awaitable[None], failure: str) -> None:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                await work
        except TimeoutError:
            raise ServiceFailed(self.planned.name, failure) from None

    async def _spawn(self, deadline: float) -> tuple[dict[str, str], Path]:
        """Open its log, make its cluster (initdb), start its process: the environment
        and folder it runs with, for its probes."""
        p = self.planned
        try:
            self.log_fd = logs.open_log(p.log_path)
        except OSError as exc:
            raise ServiceFailed(
                p.name, f"could not be started: cannot write its log {p.log_path}: {exc.strerror}"
            ) from None
        env = environment.service(p, self.run.mark, os.environ)
        command, cwd, run_as = list(p.command), p.cwd, None
        self.run.reporter.event(p.name, "starting")
        if p.pg is not None:
            from conductor.postgres import clusters

            assert p.port is not None
            self.cluster = clusters.Cluster(p.name, p.pg, p.host, p.port, self.run.mark)
            self.run.rundir.add_folder(p.pg.folder)  # recorded first: a kill can come any time
            self.cluster.make_folder()
            await self._within(deadline, self.cluster.init(self.log_fd, env), "timed out in initdb")
            command, cwd = self.cluster.command(), self.cluster.socket_dir
            run_as = clusters.run_as()
        if p.spec.kind == "container":
            command = self._engine_run()
        await self._launch(command, env, cwd, run_as)
        return env, cwd

    async def _launch(
        self, command: list[str], env: dict[str, str], cwd: Path, run_as: str | None
    ) -> None:
        try:
            self.proc = await start_stop.spawn(
                command, env=env, cwd=cwd, log_fd=self._log_fd(), run_as=run_as
            )
        except OSError as exc:
            raise ServiceFailed(
                self.planned.name, f"could not be started: {masking.mask(str(exc))}"
            ) from None

    def _engine_run(self) -> list[str]:
        """kind = "container": `ENGINE run`, attached, is the service's process (its
        output is the container's, into NAME.log; its exit is the container's), so the
        readiness race, the watch and the echo are a process's. The container is
        recorded by name before it exists: a kill that very instant still names it."""
        from conductor import container

        p = self.planned
        spec = p.spec
        assert spec.image is not None
        try:
            self.engine = container.find_engine(spec.engine, os.environ)
        except container.NoEngine as exc:
            raise ServiceFailed(p.name, f"could not be started: {exc}") from None
        publish = None
        if p.port is not None and spec.container_port is not None:
            publish = container.Publish(probes.probe_host(p.host), p.port, spec.container_port)
        self.request = container.RunRequest(
            mark=self.run.mark,
            service=p.name,
            image=spec.image,
            command=p.command,
            publish=publish,
            env=environment.container(p),
            options=spec.options,
            pull=spec.pull or "missing",
            stop_signal=spec.stop_signal.name,
            stop_timeout=spec.stop_timeout,
        )
        self.report.image, self.report.engine = spec.image, self.engine.name
        self.run.rundir.add_container(
            p.name, self.engine.name, self.request.name, spec.stop_signal, spec.stop_timeout
        )
        return container.run_argv(self.engine, self.request)

    async def _container_answers(self) -> bool:
        """Whose server answered, for a container: the engine's own port mapping of this
        very container (proven by its labels) is the port's; no other listener counts
        (the engine's helper, not the container, holds the host's socket)."""
        from conductor import container

        assert self.engine is not None
        assert self.request is not None
        p = self.planned
        found = await container.inspect(self.engine, self.request.name)
        if found is None or not found.carries(self.run.mark, p.name):
            return False
        self.report.container = found.id
        return p.port is not None and found.publishes(probes.probe_host(p.host), p.port)

    def _fatal_lines(self) -> asyncio.Task[bytes] | None:
        """`fail.log`: the first line of the service's log that a fail regex finds, from
        the attempt's start (so nothing written before this is missed); None without one."""
        patterns = self.planned.spec.fail.patterns
        if not patterns:
            return None
        compiled = [re.compile(pattern.encode()) for pattern in patterns]
        return asyncio.create_task(
            logs.first_match(self.planned.log_path, compiled, start=self.log_from), name=FATAL
        )

    def _fatal_reason(self, line: bytes) -> str:
        """Which fail.log regex found which line, the line quoted (cut to one screen line)."""
        patterns = self.planned.spec.fail.patterns
        pattern = next((p for p in patterns if re.search(p.encode(), line)), patterns[0])
        text = masking.mask_bytes(line).decode("utf-8", "replace").strip()
        if len(text) > FATAL_QUOTE:
            text = text[: FATAL_QUOTE - 1] + "…"
        return f"printed a fatal line (fail.log {pattern!r}): {text!r}"

    async def _race(
        self, racers: set[asyncio.Task[object]], deadline: float
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
                reason = self._fatal_reason(typing.cast(bytes, task.result()))
                self.report.failed_at = time.monotonic()
                await self._settle()
                raise ServiceFailed(self.planned.name, reason)
        return done

    async def _settle(self) -> None:
        """After a fatal line, before its tail is read: until the service exits or its
        log has been quiet for SETTLE_QUIET, at most SETTLE_MAX (its own deadline: no
        other wait is stretched by more). conductor.log says how it ended."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        began = time.monotonic()
        exited = asyncio.ensure_future(proc.wait())
        try:
            how = await self._quiet_or_exit(exited, began)
        finally:
            exited.cancel()
        logs.logger.info(
            "%s: waited %.2fs after its fatal line: %s",
            self.name,
            time.monotonic() - began,
            how,
        )

    async def _quiet_or_exit(self, exited: asyncio.Future[int], began: float) -> str:
        size, changed = self._log_size(), began
        while True:
            await asyncio.wait({exited}, timeout=_SETTLE_POLL)
            if exited.done():
                return "it exited"
            now = time.monotonic()
            grown = self._log_size()
            if grown != size:
                size, changed = grown, now
            elif now - changed >= SETTLE_QUIET:
                return f"its output was quiet for {SETTLE_QUIET:g}s"
            if now - began >= SETTLE_MAX:
                return (
                    f"it is still writing; its tail is what it had written by then "
                    f"({SETTLE_MAX:g}s at most)"
                )

    def _log_size(self) -> int:
        """How much the service has written to its log (-1 when that cannot be seen)."""
        try:
            if self.log_fd is not None:
                return os.fstat(self.log_fd).st_size
            return self.planned.log_path.stat().st_size
        except OSError:
            return -1

    async def _until_ready(
        self,
        env: Mapping[str, str],
        cwd: Path,
        deadline: float,
        fatal: asyncio.Task[bytes] | None,
    ) -> None:
        """The probe passes; the process exiting, a fail.log line or the deadline
        coming first is ServiceFailed."""
        p, report, proc = self.planned, self.report, self.proc
        assert proc is not None
        what = probes.describe(p.ready, p.host, p.port)
        self.run.reporter.event(p.name, "started", f"pid {proc.pid}, waiting for {what}")
        probe: asyncio.Task[object] = asyncio.create_task(self._wait_ready(env, cwd))
        exited: asyncio.Task[object] = asyncio.create_task(proc.wait())
        racers = {probe, exited, *([fatal] if fatal is not None else [])}
        done = await self._race(racers, deadline)
        if probe in done and not probe.cancelled() and probe.exception() is None:
            return
        if exited in done:
            report.ended = time.monotonic()
            report.exit_code = start_stop.exit_status(proc.returncode)
            raise ServiceFailed(
                p.name, f"{start_stop.describe_exit(proc.returncode)} before it was ready"
            )
        if probe in done:
            error = probe.exception()
            if isinstance(error, ServiceFailed):
                raise error
            raise ServiceFailed(p.name, f"readiness probe failed: {masking.mask(repr(error))}")
        raise ServiceFailed(
            p.name,
            f"was not ready after {p.spec.ready_timeout:g}s (ready_timeout; waited for {what})",
        )

    async def _finish_task(
        self, began: float, deadline: float, fatal: asyncio.Task[bytes] | None
    ) -> None:
        """kind = "task": ready once it exits 0. Its later absence is its success, so no
        death watch; its fail.log lines are still watched."""
        p, report, proc = self.planned, self.report, self.proc
        assert proc is not None
        self.run.reporter.event(p.name, "started", f"pid {proc.pid}, waiting for it to finish")
        exited: asyncio.Task[object] = asyncio.create_task(proc.wait())
        await self._race({exited, *([fatal] if fatal is not None else [])}, deadline)
        if proc.returncode is None:
            raise ServiceFailed(
                p.name,
                f"did not finish within {p.spec.ready_timeout:g}s (ready_timeout); stopped it",
            )
        report.ended = time.monotonic()
        report.exit_code = start_stop.exit_status(proc.returncode)
        if proc.returncode != 0:
            raise ServiceFailed(
                p.name, f"{start_stop.describe_exit(proc.returncode)} (a task must exit 0)"
            )
        now = time.monotonic()
        report.duration_s = now - began
        report.ready_after_s = now - self.run.started_at
        self.run.reporter.event(p.name, "completed", f"in {report.duration_s:.2f}s")
        self.run.rundir.forget_process(proc.pid)
        self.ready.set()
        if fatal is not None:
            self._background(self._watch_fatal(fatal))

    async def _wait_ready(self, env: Mapping[str, str], cwd: Path) -> None:
        """The readiness probe and whose server answered; for a cluster, then, proof
        that its database opens (the postmaster says it is ready before any backend has
        read a catalog, which a damaged cache entry fails)."""
        await self._probe_answers(env, cwd)
        if self.cluster is not None and not await self.cluster.prove():
            logs.logger.info(
                "%s: no Unix socket in %s (a setting moved it): ready without a connection",
                self.planned.name,
                self.cluster.socket_dir,
            )

    async def _probe_answers(self, env: Mapping[str, str], cwd: Path) -> None:
        """The readiness probe, then proof that the server on the service's port is the
        service's own: a port free when the plan was made can be taken by another
        program before the service binds it, and the probe would get its answer."""
        p = self.planned
        assert self.proc is not None
        leader = self.proc.pid
        while True:
            await probes.wait_ready(
                p.ready,
                host=p.host,
                port=p.port,
                log_path=p.log_path,
                env=env,
                cwd=cwd,
                log_from=self.log_from,
            )
            if p.port is None:
                return
            if self.request is not None:
                if await self._container_answers():
                    return
                raise ServiceFailed(
                    p.name,
                    f"was not the one answering on port {p.port}: the engine does not "
                    f"publish this container's port there; stop what holds it, or pass "
                    "--auto-ports",
                )
            from conductor.process import listeners

            found = listeners.whose(
                probes.probe_host(p.host),
                p.port,
                leader,
                lambda: [proc.pid for proc in ownership.marked(self.run.mark, p.name)],
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

    async def _reuse(self, deadline: float) -> None:
        p = self.planned
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
        self.report.status = "reused"
        self.report.ready_after_s = time.monotonic() - self.run.started_at
        self.run.reporter.event(p.name, "reused", f"already answering on port {p.port}")
        self.ready.set()

    # while COMMAND runs -----------------------------------------------------------
    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def _watch(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        self.report.ended = time.monotonic()
        teardown = self.run.teardown
        if teardown.stopping or teardown.killed or self.dead:
            return
        self.report.exit_code = start_stop.exit_status(self.proc.returncode)
        self._died(f"{start_stop.describe_exit(self.proc.returncode)} while the command ran")

    async def _watch_fatal(self, fatal: asyncio.Task[bytes]) -> None:
        """fail.log after readiness: a matching line fails the run as a death does, once
        the service has finished saying why (_settle). Reported even if teardown begins
        meanwhile (it then stops the service, which ends the wait)."""
        try:
            line = await fatal
        finally:
            fatal.cancel()
        if self.run.teardown.stopping or self.dead:
            return
        self.dead = True  # said once: its exit during the wait is no second death
        self.report.failed_at = time.monotonic()
        try:
            await self._settle()
        finally:
            self._died(self._fatal_reason(line))

    def _died(self, reason: str) -> None:
        """A ready service is gone or broken: say so with its log tail, and wake the
        runner, which stops COMMAND (or, with --keep-going, lets it finish)."""
        self.report.status = "failed"
        self.dead = True
        self.run.reporter.failure(self.planned.name, reason, self.planned.log_path)
        self.run.died(self.planned.name)

    def start_echo(self) -> None:
        """--show-logs: its log on the console as it is written."""
        self.echo = asyncio.ensure_future(self._echo())

    async def _echo(self) -> None:
        """Until teardown is over and its log is read to the end, or ECHO_DRAIN after
        that (then it says where the rest is)."""
        p = self.planned
        follow = logs.follow(p.log_path, stop=lambda: self.run.teardown.over)
        try:
            async with contextlib.aclosing(follow) as batches:
                async for batch in batches:
                    self.run.reporter.log_lines(p.name, batch)
        except asyncio.CancelledError:
            self.run.reporter.info(
                f"{p.name}: --show-logs stops here, {ECHO_DRAIN:g}s after teardown; "
                f"the whole log is {p.log_path}"
            )
            raise

    # stop -----------------------------------------------------------------------
    async def _stop_container(self) -> container.Stopped | None:
        """kind = "container": stop and remove it through the engine, with its anonymous
        volumes, once its labels prove it the run's; `ENGINE run` then ends by itself."""
        if self.engine is None or self.request is None:
            return None
        from conductor import container

        spec = self.planned.spec
        try:
            ended = await container.stop(
                self.engine,
                self.request.name,
                self.run.mark,
                self.planned.name,
                stop_signal=spec.stop_signal.name,
                stop_timeout=spec.stop_timeout,
            )
        except (ownership.NotOurs, container.EngineFailed) as exc:
            self.run.reporter.warning(f"service '{self.planned.name}': {exc}")
            return None
        self.run.rundir.forget_container(self.request.name)
        return ended

    async def _stop_leader(
        self, *, killed: bool = False, strays: list[psutil.Process] | None = None
    ) -> start_stop.StopResult:
        """The service's process stopped as its spec says (start_stop.stop_service)."""
        assert self.proc is not None
        p = self.planned
        return await start_stop.stop_service(
            self.proc,
            started=self.started,
            mark=self.run.mark,
            service=p.name,
            stop_signal=p.spec.stop_signal,
            timeout=p.spec.stop_timeout,
            killed=killed,
            strays=strays,
        )

    async def stop(self, strays: list[psutil.Process] | None = None) -> None:
        """Its stop signal to its group and marked strays (`strays`: the teardown's one
        scan found them), SIGKILL after stop_timeout; then its cluster folder and its
        log's descriptor go."""
        p, report = self.planned, self.report
        try:
            if self.proc is None:
                return
            report.stop_began = time.monotonic()
            ended = await self._stop_container()
            result = await self._stop_leader(killed=self.run.teardown.killed, strays=strays)
            if ended is not None:
                took = time.monotonic() - report.stop_began
                result = _as_container(ended, p.spec.stop_signal.name, took)
            report.record_stop(result)
            if result.forced and not self.run.teardown.killed:
                self.run.reporter.warning(
                    f"service '{p.name}' ignored {p.spec.stop_signal.name} for "
                    f"{p.spec.stop_timeout:g}s (stop_timeout) and was killed with SIGKILL"
                )
            else:
                logs.logger.info("%s: %s in %.3fs", p.name, result.how, result.seconds)
        finally:
            if self.cluster is not None:
                await self.cluster.remove()
            if self.log_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.log_fd)
                self.log_fd = None


# "gone": removed by someone else before conductor stopped it: it ended by itself, for us
_CONTAINER_ENDINGS: dict[container.Outcome, start_stop.Ending] = {
    "stopped": "stopped",
    "forced": "forced",
    "exited": "exited",
    "gone": "exited",
}


def _as_container(ended: container.Stopped, sig: str, seconds: float) -> start_stop.StopResult:
    """How a container service ended is the container's, as the engine recorded it: the
    engine's client process only follows it."""
    how = {
        "stopped": f"stopped by {sig}",
        "forced": f"ignored {sig}, killed",
        "exited": f"had exited with status {ended.exit_code}",
        "gone": "had been removed by someone else",
    }[ended.outcome]
    ending = _CONTAINER_ENDINGS[ended.outcome]
    return start_stop.StopResult(how, ending, seconds, ended.exit_code, None)
