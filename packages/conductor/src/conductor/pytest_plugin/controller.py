"""The pytest plugin's work in the process that owns the run: find, attach to or start
the stack, put its environment in place, and stop it (only if it is ours) at the end.

Three ways to get a stack, tried in this order:

- surrounding: pytest is the COMMAND of a `conductor run` (nox, invoke); its stack is
  in the environment already, and nothing is started or stopped.
- attached: a live `conductor up` of the same configuration and services in the same
  logs folder (--conductor-attach auto or require); nothing is started or stopped.
- started: a Stack of our own, held in a thread for the whole run (HeldInThread) and
  stopped at pytest_unconfigure, whether the run passed, failed, was cut short by -x or
  Ctrl-C (or SIGTERM), or broke in a fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import pytest

from conductor import attach, environment
from conductor.attach import AttachMode, LiveStack
from conductor.config.loading import Config, find_config, load_config
from conductor.environment import LOGS_DIR_ENV, Address
from conductor.errors import EXIT_SIGTERM, ConductorError
from conductor.process import ownership
from conductor.pytest_plugin.fixture import ConductorStack
from conductor.pytest_plugin.in_thread import HeldInThread
from conductor.report import summary
from conductor.report.console import Reporter
from conductor.stack import Stack


@dataclass(frozen=True)
class Request:
    """What a test run asks for (options, ini keys, conftest hooks)."""

    services: list[str]
    env: dict[str, str]
    config_file: Path | None
    logs_dir: Path | None
    attach: AttachMode
    auto_ports: bool
    search_from: Path


def surrounding_run(environ: Mapping[str, str]) -> str | None:
    """The run id of the `conductor run` whose COMMAND this process is, if it is one."""
    if environ.get(ownership.MARKER_SERVICE) == ownership.COMMAND:
        return environ.get(ownership.MARKER_RUN) or None
    return None


def _plain(addresses: Mapping[str, Address]) -> dict[str, dict[str, Any]]:
    return {name: address.as_json() for name, address in addresses.items()}


class OwnedRun:
    """The stack of one test run, seen from the process that owns the run."""

    def __init__(self, request: Request, *, verbosity: int = 0) -> None:
        self.request = request
        self.verbosity = verbosity
        self.began = time.monotonic()
        self.ready_at: float | None = None
        self.mode = ""
        self.stack: Stack | None = None
        self.live: LiveStack | None = None
        self._held: HeldInThread[Stack] | None = None
        self._saved_env: dict[str, str | None] = {}
        self._stream: IO[str] | None = None
        self._previous_sigterm: Any = None

    # start ------------------------------------------------------------------------
    def start(self) -> ConductorStack:
        """The run's stack, its environment in os.environ; pytest.UsageError (one line,
        after the failing service's log tail) when it cannot be had."""
        request = self.request
        try:
            config = load_config(request.config_file or find_config(request.search_from))
            config.start_order(request.services)  # unknown names fail here, in every mode
            outer = surrounding_run(os.environ)
            if outer is not None:
                view = self._surrounding(config, outer)
            else:
                logs_dir = (request.logs_dir or config.logs_dir).resolve()
                live, why = attach.choose(config, request.services, logs_dir, request.attach)
                if live is not None:
                    view = self._attached(config, live)
                else:
                    view = self._started(config, logs_dir, why)
        except ConductorError as exc:
            self.finish(exitstatus=None, args=[])
            raise pytest.UsageError(f"conductor: {exc}") from None
        self.ready_at = time.monotonic()
        self._apply(view.env)
        return view

    def _surrounding(self, config: Config, run_id: str) -> ConductorStack:
        self.mode = "surrounding"
        addresses = environment.from_environ(config.services, os.environ)
        logs_dir = Path(os.environ.get(LOGS_DIR_ENV) or config.logs_dir)
        # The surrounding run built this very environment (environment.command): its
        # addresses, its configuration's templates and its mark are in it. Ours add
        # the templates it did not fill, and conductor_env, which wins as everywhere.
        requested = environment.Requested.of(config, self.request.env).without(os.environ)
        context = environment.context_of(config, logs_dir, addresses)
        env = environment.command(
            config,
            requested,
            context,
            addresses,
            run=None,
            inherited=os.environ,
            addresses=False,
        ).added()
        unavailable = {
            name: "the surrounding `conductor run` does not provide it (no "
            "{2} or {0} in its environment)".format(*environment.variables(name))
            for name in self.request.services
            if name not in addresses
        }
        running = ", ".join(addresses) or "no services"
        return ConductorStack(
            mode="surrounding",
            description=f"conductor: inside `conductor run` {run_id[:8]}: {running} (nothing "
            "started, nothing will be stopped)",
            logs_dir=os.environ.get(LOGS_DIR_ENV),
            services=_plain(addresses),
            env=env,
            unavailable=unavailable,
        )

    def _attached(self, config: Config, live: LiveStack) -> ConductorStack:
        attach.check_request(config, self.request.services, live.logs_dir, self.request.env)
        self.mode, self.live = "attached", live
        env = attach.command_env(config, live, self.request.env, run=live.logs_dir).added()
        return ConductorStack(
            mode="attached",
            description=f"conductor: {attach.describe(live)}",
            logs_dir=str(live.logs_dir),
            services=_plain(live.addresses),
            env=env,
            unavailable={name: f"skipped ({why})" for name, why in live.skipped.items()},
        )

    def _started(
        self, config: Config, logs_dir: Path, why: attach.NotAttachable | None
    ) -> ConductorStack:
        self.mode = "started"
        reporter = Reporter(self._terminal(), quiet=self.verbosity < 1)
        stack = Stack(
            config,
            self.request.services,
            logs_dir=logs_dir,
            auto_ports=self.request.auto_ports,
            reporter=reporter,
            command_env=self.request.env,
            subfolder_if_busy=True,
            hold_until_closed=True,  # finish() writes summary.json before the folder goes
        )
        held = HeldInThread(lambda: stack, "conductor-stack", on_interrupt=stack.kill_now)
        self._catch_sigterm()
        self.stack = stack  # a failed start holds its folder too, until finish() closes it
        held.__enter__()
        self._held = held
        env = stack.exported_env()
        seconds = time.monotonic() - self.began
        description = (
            f"conductor: started {', '.join(stack.addresses) or 'no services'} in {seconds:.2f}s"
        )
        if why is not None and why.found:
            description += f" (not attached: {why})"
        skipped = stack.plan.skipped if stack.plan is not None else {}
        return ConductorStack(
            mode="started",
            description=description,
            logs_dir=str(stack.logs_dir),
            services=_plain(stack.addresses),
            env=env,
            unavailable={name: f"skipped ({reason})" for name, reason in skipped.items()},
        )

    # during -----------------------------------------------------------------------
    def died(self) -> list[str]:
        """One line per service of ours that died while the tests ran."""
        if self.stack is None:
            return []
        lines = []
        for name in self.stack.died:
            report = self.stack.reports[name]
            lines.append(
                f"conductor: service '{name}' died while the tests ran "
                f"(exit status {report.exit_code}); its log: {report.log}"
            )
        return lines

    # end --------------------------------------------------------------------------
    def finish(self, *, exitstatus: int | None, args: list[str]) -> dict[str, Any]:
        """Stop the stack if it is ours, put the environment back; the run's summary
        (for a stack of ours, what summary.json says)."""
        stopping = time.monotonic()
        result: dict[str, Any] = {"mode": self.mode}
        try:
            if self._held is not None:
                held, self._held = self._held, None
                try:
                    held.close()
                except Exception as exc:  # never a traceback over the test results
                    self._say(f"conductor: stopping the stack failed: {exc!r}")
            ended = time.monotonic()
            ready = self.ready_at or stopping
            if self.stack is not None and self.stack.plan is not None:
                record = summary.summarize(
                    self.stack,
                    action="pytest",
                    exit_code=exitstatus if exitstatus is not None else -1,
                    command=["pytest", *args],
                    command_span=(ready, stopping) if self.ready_at is not None else None,
                    torn=stopping,
                    ended=ended,
                )
                self.stack.close(record, table=self.verbosity >= 0)
                result |= summary.to_builtins(record)
                return result
            result["durations"] = {
                "startup_s": ready - self.began,
                "tests_s": stopping - ready,
                "teardown_s": ended - stopping,
                "total_s": ended - self.began,
            }
            if self.live is not None:
                result["services"] = _plain(self.live.addresses)
        finally:
            if self.stack is not None:
                self.stack.close()  # when it did not get as far as its summary
            self._restore()
            self._release_sigterm()
            if self._stream is not None and self._stream is not sys.stderr:
                with contextlib.suppress(OSError):
                    self._stream.close()
            self._stream = None
        return result

    # helpers ----------------------------------------------------------------------
    def _terminal(self) -> IO[str]:
        """The terminal itself (a copy of fd 2), so that a service dying mid-test is
        said at once instead of disappearing into that test's captured output."""
        if self._stream is None:
            try:
                self._stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
            except (OSError, ValueError, AttributeError):
                self._stream = sys.stderr
        return self._stream

    def _say(self, line: str) -> None:
        stream = self._terminal()
        stream.write(line + "\n")
        stream.flush()

    def _apply(self, env: Mapping[str, str]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _catch_sigterm(self) -> None:
        """SIGTERM (a CI job cancelled) ends the run like Ctrl-C does, through
        pytest_unconfigure, so our services are stopped; by default it would kill
        pytest on the spot and leave them running."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self._held is not None:
                self._held.begin_close()  # now: xdist may wait 10 s for its workers
            pytest.exit("conductor: SIGTERM: stopping the stack", returncode=EXIT_SIGTERM)

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
