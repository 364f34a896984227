"""`run` and `up`: a stack, a command, signals and a deadline, with teardown in `finally`.

Exit statuses: COMMAND's own; 124 when --timeout expired; 125 when a service failed;
2 for usage or configuration errors; 130 and 143 after SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from conductor import errors
from conductor.config import schema
from conductor.config.loading import Config
from conductor.files import logs, masking
from conductor.files.printable import printable
from conductor.process.command import STOP_GRACE, Command, CommandNotRunnable, check_argv
from conductor.process.kill import shielded
from conductor.process.signals import CaptureSignals
from conductor.process.subreaper import Subreaper
from conductor.report.console import Reporter, redact
from conductor.rundir import lockfile
from conductor.rundir.run_record import RunDir
from conductor.stack import Stack

# Imported where used, not here: conductor.attach (its fingerprint's hashlib, the
# record's proofs, the container engine's inspect) only for --attach and `up`'s
# publish; conductor.report.summary (summary.json's Structs) once the run is over.
# A plain `conductor run` gets to its first spawn without either (test_start_imports).
if TYPE_CHECKING:
    from conductor.attach import AttachedStack, AttachMode
    from conductor.postgres import template_cache

_LOCK_POLL = 0.02  # how often clean tries a lock that a killed run's watchdog holds

COMMAND_GRACE = 10.0  # how long COMMAND may take to finish after a forwarded signal
TIMEOUT_GRACE = STOP_GRACE  # SIGTERM to SIGKILL for COMMAND when --timeout expires
DEATH_GRACE = 5.0  # SIGINT to killing COMMAND's tree when a service dies (--stop-grace)


@dataclass
class Options:
    services: list[str] = field(default_factory=list)
    logs_dir: Path | None = None
    timeout: float | None = None
    auto_ports: bool = False
    show_logs: bool = False
    # Extra variables for COMMAND, templated like a service's env: {services.db.url}.
    env: dict[str, str] = field(default_factory=dict)
    # When another run holds logs_dir, log to a subfolder of it instead of failing.
    subfolder_if_busy: bool = False
    # `run` only: reuse a live `conductor up` of the same configuration and services.
    attach: AttachMode = "never"
    # `run` only: a service that dies (or prints a fail.log line) while COMMAND runs
    # stops COMMAND: SIGINT, then its tree is killed after stop_grace seconds.
    # keep_going lets COMMAND run to its end instead (the run still fails: 125).
    keep_going: bool = False
    stop_grace: float = DEATH_GRACE
    # `run` only: COMMAND's folder (--cwd), over [run].cwd.
    cwd: Path | None = None
    # --keep-logs: keep this many runs' files in runs/ of the logs folder; None: the
    # configuration's [run].keep_logs.
    keep_logs: int | None = None

    def __post_init__(self) -> None:
        # NaN made every deadline check false (a busy loop), 0 meant "no limit": a
        # timeout is a positive, finite number of seconds (the config's rule), or None.
        if self.timeout is not None and not schema.is_seconds(self.timeout):
            raise errors.ConductorError(
                f"--timeout must be a positive, finite number of seconds, not {self.timeout!r}"
            )
        if not (math.isfinite(self.stop_grace) and self.stop_grace >= 0):
            raise errors.ConductorError(
                f"--stop-grace must be a number of seconds, 0 or more, not {self.stop_grace!r}"
            )
        if self.keep_logs is not None and not schema.is_runs_to_keep(self.keep_logs):
            raise bad_keep_logs(self.keep_logs)
        if self.cwd is not None and not self.cwd.is_dir():
            raise errors.ConductorError(
                f"--cwd {printable(str(self.cwd))}: no such folder; give COMMAND a folder "
                "that exists"
            )


def bad_keep_logs(value: object) -> errors.ConductorError:
    """The one line for a --keep-logs that is no number of runs."""
    return errors.ConductorError(
        f"--keep-logs must be {schema.RUNS_TO_KEEP}, not {printable(repr(value))}; "
        "e.g. --keep-logs 5"
    )


def parse_keep_logs(text: str) -> int:
    """--keep-logs N from the command line: ASCII digits only (no sign, no fraction)."""
    if not (text.isascii() and text.isdigit()):
        raise bad_keep_logs(text)
    return int(text)


@dataclass
class _Outcome:
    signals: list[signal.Signals] = field(default_factory=list)
    timed_out: bool = False

    def status(self) -> int | None:
        if self.timed_out:
            return errors.EXIT_TIMEOUT
        if self.signals:
            return errors.EXIT_SIGINT if self.signals[0] == signal.SIGINT else errors.EXIT_SIGTERM
        return None


def _stack(
    config: Config, options: Options, reporter: Reporter, subreaper: Subreaper | None
) -> Stack:
    return Stack(
        config,
        options.services or None,
        logs_dir=options.logs_dir,
        auto_ports=options.auto_ports,
        show_logs=options.show_logs,
        reporter=reporter,
        subreaper=subreaper,
        command_env=options.env,
        subfolder_if_busy=options.subfolder_if_busy,
        hold_until_closed=True,  # _summarize writes summary.json before the folder goes
        keep_logs=options.keep_logs,
    )


def _stack_or_attached(
    config: Config, options: Options, reporter: Reporter, subreaper: Subreaper | None
) -> Stack | AttachedStack:
    """--attach: the live `up` to reuse when there is one (require: or NotAttachable)."""
    if options.attach == "never":  # attach.choose's answer for it, without its import
        return _stack(config, options, reporter, subreaper)
    from conductor import attach
    from conductor.attach import AttachedStack

    logs_dir = options.logs_dir or config.logs_dir
    live, why = attach.choose(config, options.services or None, logs_dir, options.attach)
    if live is not None:
        reporter.info(attach.describe(live))
        return AttachedStack(config, live, command_env=options.env)
    if why is not None:
        # --attach (auto) never fails on the folder it could not attach to: a busy one
        # (the up it could not use, say) gives this run a run-PID subfolder instead.
        reporter.info(f"not attaching: {why}; starting a stack of its own")
        options = replace(options, subfolder_if_busy=True)
    return _stack(config, options, reporter, subreaper)


async def run(
    config: Config,
    command: list[str],
    options: Options,
    reporter: Reporter | None = None,
    *,
    subreaper: Subreaper | None = None,
) -> int:
    """Start the services, run COMMAND inside them, tear down; the exit status.
    `subreaper`: the CLI's own (library callers never pass one)."""
    check_argv(command)
    reporter = reporter or Reporter()
    stack: Stack | AttachedStack = _stack_or_attached(config, options, reporter, subreaper)
    outcome = _Outcome()
    cmd: Command | None = None
    woken = asyncio.Event()
    began = time.monotonic()
    command_began: float | None = None
    command_ended: float | None = None
    status: int | None = None

    async def body() -> int:
        nonlocal cmd, command_began, command_ended
        await stack.start()
        env = stack.command_env()
        for notice in env.notices():
            reporter.info(notice)
        cmd = Command(command, env.values, stack.mark, cwd=options.cwd or config.command_cwd)
        command_began = time.monotonic()
        # as a shell would take the words, on one line whatever they hold (a -c script)
        shown = printable(shlex.join(map(masking.mask, command)))
        reporter.info("all services ready; running " + shown)
        await cmd.start()
        try:
            if options.keep_going:
                return await cmd.wait()
            return await _stop_on_death(cmd, stack, options.stop_grace, reporter)
        finally:
            command_ended = time.monotonic()

    body_task = asyncio.create_task(body())

    def on_signal(sig: signal.Signals) -> None:
        outcome.signals.append(sig)
        woken.set()
        if len(outcome.signals) > 1:
            reporter.warning(f"second {sig.name}: killing everything now")
            if cmd is not None:
                cmd.kill_now()
            stack.kill_now()
            body_task.cancel()
        elif cmd is not None and cmd.running:
            reporter.warning(
                f"{sig.name}: passing it to the command, then stopping services "
                "(again to kill everything at once)"
            )
            if not (sig == signal.SIGINT and cmd.shares_terminal):
                cmd.send(sig)
        else:
            reporter.warning(f"{sig.name}: stopping services (again to kill everything at once)")
            body_task.cancel()

    try:
        with CaptureSignals(on_signal):
            await _supervise(
                body_task, woken, outcome, options.timeout, began, lambda: cmd, reporter
            )
            try:
                status = body_task.result()
            except asyncio.CancelledError:
                status = None
            except errors.ServiceFailed:
                status = errors.EXIT_SERVICE_FAILED
            except CommandNotRunnable as exc:
                reporter.failure("(command)", masking.mask(str(exc)), None)
                status = exc.exit_code
            except errors.ConductorError as exc:
                # Reported here rather than by the CLI, so that summary.json (when
                # there is one) and the exit status agree.
                reporter.error(str(exc))
                status = exc.exit_code
    finally:

        def force(sig: signal.Signals) -> None:
            reporter.warning(f"{sig.name} during teardown: killing everything now")
            stack.kill_now()
            if cmd is not None:
                cmd.kill_now()

        try:
            with CaptureSignals(force):
                torn = time.monotonic()
                if cmd is not None:
                    with logs.step("stopped COMMAND") as notes:
                        notes.append("it was running" if cmd.running else "it had exited")
                        await shielded(cmd.terminate(TIMEOUT_GRACE))
                await shielded(stack.stop())
                ended = time.monotonic()
            final = outcome.status() or status
            stopped_for_death = stack.died and not options.keep_going and not outcome.status()
            if final is None or stopped_for_death or (final == 0 and stack.died):
                final = errors.EXIT_SERVICE_FAILED
            command_span = (command_began, command_ended or torn) if command_began else None
            if isinstance(stack, Stack):  # an attached run writes nothing in the up's folder
                _summarize(stack, final, command, command_span, torn, ended)
        finally:
            if isinstance(stack, Stack):
                stack.close()  # when _summarize did not get to it
    return final


async def _stop_on_death(
    cmd: Command, stack: Stack | AttachedStack, grace: float, reporter: Reporter
) -> int:
    """COMMAND's status; when a service dies first, COMMAND gets SIGINT (pytest then
    prints its summary), and its whole tree is killed after `grace` seconds: tests
    against a dead service only wait out their own timeouts."""
    waiting = asyncio.ensure_future(cmd.wait())
    died = asyncio.ensure_future(stack.died_event.wait())
    try:
        await asyncio.wait({waiting, died}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result()
        names = ", ".join(f"'{name}'" for name in stack.died)
        reporter.warning(
            f"service {names} failed while the command ran: stopping the command (SIGINT, "
            f"killed after {grace:g}s, --stop-grace); --keep-going lets it finish"
        )
        cmd.send(signal.SIGINT)
        try:
            async with asyncio.timeout(grace):
                return await asyncio.shield(waiting)
        except TimeoutError:
            reporter.warning(
                f"the command did not exit {grace:g}s after SIGINT (--stop-grace); killing it"
            )
            cmd.kill_now()
            return await waiting
    finally:
        died.cancel()
        waiting.cancel()


def _summarize(
    stack: Stack,
    exit_code: int,
    command: list[str] | None,
    command_span: tuple[float, float] | None,
    torn: float,
    ended: float,
) -> None:
    """summary.json, report.html and the closing table, for `run` and `up` alike, while
    the run still holds its logs folder; then the folder is let go."""
    from conductor.report import summary

    record = summary.summarize(
        stack,
        action="run" if command is not None else "up",
        exit_code=exit_code,
        command=command,
        command_span=command_span,
        torn=torn,
        ended=ended,
    )
    stack.close(record)


async def _supervise(
    body_task: asyncio.Task[int],
    woken: asyncio.Event,
    outcome: _Outcome,
    timeout: float | None,
    began: float,
    get_cmd: Callable[[], Command | None],
    reporter: Reporter,
) -> None:
    """Wait for the body, enforcing --timeout and the grace after a forwarded signal."""
    deadline = began + timeout if timeout is not None else None
    grace_until: float | None = None
    while not body_task.done():
        now = time.monotonic()
        limits = [t - now for t in (deadline, grace_until) if t is not None]
        woken.clear()
        waiter = asyncio.create_task(woken.wait())
        await asyncio.wait(
            {body_task, waiter},
            timeout=max(min(limits), 0) if limits else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
        waiter.cancel()
        now = time.monotonic()
        cmd = get_cmd()
        if deadline is not None and now >= deadline and not outcome.timed_out:
            outcome.timed_out = True
            reporter.failure(
                "(conductor)",
                f"--timeout of {timeout:g}s expired; killing the command and stopping services",
                None,
            )
            if cmd is not None and cmd.running:
                await cmd.terminate(TIMEOUT_GRACE)
            else:
                body_task.cancel()
        if outcome.signals and grace_until is None:
            grace_until = now + COMMAND_GRACE
        if grace_until is not None and now >= grace_until and cmd is not None and cmd.running:
            reporter.warning(
                f"the command did not exit {COMMAND_GRACE:g}s after "
                f"{outcome.signals[0].name}; terminating it"
            )
            await cmd.terminate(TIMEOUT_GRACE)
    await asyncio.gather(body_task, return_exceptions=True)


async def up(
    config: Config,
    options: Options,
    reporter: Reporter | None = None,
    *,
    subreaper: Subreaper | None = None,
) -> int:
    """Start the services and keep them until Ctrl-C or until one of them dies.

    Stopped by a signal, `up` exits 130 (SIGINT) or 143 (SIGTERM), as `run` does: the
    caller can tell "stopped on request" from "a service died" (125)."""
    reporter = reporter or Reporter()
    stack = _stack(config, options, reporter, subreaper)
    outcome = _Outcome()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if outcome.signals:
            reporter.warning(f"second {sig.name}: killing everything now")
            stack.kill_now()
        outcome.signals.append(sig)
        stop.set()
        starting.cancel()

    status: int | None = None
    starting = asyncio.create_task(stack.start())
    with CaptureSignals(on_signal):
        try:
            try:
                await starting
            except asyncio.CancelledError:
                status = outcome.status() or errors.EXIT_SIGINT
                return status
            except errors.ServiceFailed:
                status = outcome.status() or errors.EXIT_SERVICE_FAILED
                return status
            from conductor import attach  # only `up` publishes its stack

            attach.publish(stack)
            with contextlib.suppress(OSError, ValueError):  # stdout's reader may be gone
                for name, url in stack.urls.items():
                    print(f"{name}: {redact(url)}", flush=True)
            reporter.info("all services ready; Ctrl-C to stop them")
            died = asyncio.create_task(stack.died_event.wait())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({died, stopped}, return_when=asyncio.FIRST_COMPLETED)
            died.cancel()
            stopped.cancel()
        finally:
            try:
                torn = time.monotonic()
                await shielded(stack.stop())
                if status is None:
                    status = outcome.status() or (errors.EXIT_SERVICE_FAILED if stack.died else 0)
                _summarize(stack, status, None, None, torn, time.monotonic())
            finally:
                stack.close()  # when _summarize did not get to it
    return status


@dataclass
class Cleaned:
    """What `clean` did: processes stopped, folders removed, folders of live runs left
    alone (`busy`), and at most one warning about what a record named but conductor
    could not prove it started."""

    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    waited: list[str] = field(default_factory=list)  # for a killed run's watchdog
    warning: str | None = None


def clean_cache() -> template_cache.Emptied:
    """`clean --cache`: empty the PostgreSQL template cache of the entries conductor
    made (its manifest in them); nothing else in it, and nothing through a link. A
    run that is copying from one meanwhile doubts it and runs initdb."""
    from conductor.postgres import template_cache  # (hashlib): clean --cache only

    entries = template_cache.root()
    return template_cache.Emptied() if entries is None else template_cache.empty(entries)


async def clean(logs_dir: Path) -> Cleaned:
    """Stop what a killed run left behind in `logs_dir` and in its run-PID subfolders
    (--if-busy subfolder). A folder a live run holds is left alone and named in `busy`;
    one whose run's watchdog is still stopping what it left is waited for, so nothing
    of it is left when clean returns; nothing is created, not even `logs_dir`."""
    done = Cleaned()
    if not logs_dir.is_dir():
        return done
    ignored: list[str] = []
    # A link named run-* is no subfolder of this one: never followed out of it.
    runs = (p for p in logs_dir.glob("run-*") if p.is_dir() and not p.is_symlink())
    folders = [logs_dir, *sorted(runs)]
    for folder in folders:
        rundir = RunDir(folder)
        try:
            if not await _own(rundir, done):
                continue
        except OSError as exc:
            ignored.append(f"{folder}: cannot be examined ({exc.strerror or exc})")
            continue
        try:
            left = await rundir.stop_leftovers()
        finally:
            rundir.release()
        done.stopped += left.stopped
        done.removed += left.removed
        if left.warning():
            ignored.append(str(left.warning()))
    if ignored:
        done.warning = ignored[0] if len(ignored) == 1 else " | ".join(ignored)
    return done


async def _own(rundir: RunDir, done: Cleaned) -> bool:
    """Take `rundir`'s lock for clean: False when there is nothing to own. A folder
    whose conductor is gone but whose lock is held is its watchdog's, still at work:
    wait for it, bounded by the record's stop timeouts (RunDir.watchdog_bound)."""
    try:
        return rundir.lock(create=False)
    except errors.LogsDirBusy as exc:
        bound = rundir.watchdog_bound()
        began = time.monotonic()
        while bound is not None and time.monotonic() - began < bound:
            await asyncio.sleep(_LOCK_POLL)
            bound = rundir.watchdog_bound() or bound  # the watchdog's own, once it is there
            with contextlib.suppress(errors.LogsDirBusy):
                owned = rundir.lock(create=False)
                done.waited.append(
                    f"waited {time.monotonic() - began:.1f}s for the watchdog of a killed "
                    f"run in {rundir.logs_dir} to stop what it left (its conductor.log "
                    "says what)"
                )
                return owned
        what = "the watchdog of a killed run" if bound is not None else "a running conductor"
        done.busy.append(
            f"{rundir.logs_dir} is still in use by {what} ({lockfile.describe(exc.holder)}); "
            "left alone: "
            + (
                "it did not finish in time; run clean again"
                if bound is not None
                else "stop that run, then clean again"
            )
        )
        return False
