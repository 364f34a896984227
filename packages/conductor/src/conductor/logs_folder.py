"""A run's logs folder, from taking it to letting it go: its lock (or, when another run
holds it and the run may, a run-PID subfolder of it), conductor.log, the run record and
the watchdog that shares the lock, and the pruning of old run-PID subfolders.

The Stack (stack.py) runs its services in it; what happens in the folder, and in what
order, is here, so that the Stack keeps the set of services and their order.
"""

from __future__ import annotations

import logging
from pathlib import Path

from conductor.config.loading import Config
from conductor.errors import ConfigError, LogsDirBusy
from conductor.files import logs, safe_io
from conductor.process import ownership, portable
from conductor.report import summary
from conductor.report.console import Reporter
from conductor.rundir import runfolders, watchdog
from conductor.rundir.run_record import RunDir


class LogsFolder:
    """One run's logs folder. `path` is final once claimed (a run-PID subfolder of
    `base` when the folder was busy); `locked` while the run holds it."""

    def __init__(
        self,
        config: Config,
        logs_dir: Path | None,
        reporter: Reporter,
        run_id: str,
        *,
        subfolder_if_busy: bool,
    ) -> None:
        self.config = config
        self.path = (logs_dir or config.logs_dir).resolve()
        self.base = self.path  # the configured folder: path may become a subfolder of it
        self._given = logs_dir is not None
        self.reporter = reporter
        self.run_id = run_id
        self.subfolder_if_busy = subfolder_if_busy
        self.rundir = RunDir(self.path)
        self.locked = False
        self.watchdog: watchdog.Watchdog | None = None
        self._log_handler: logging.Handler | None = None

    def claim(self) -> None:
        """Take the folder's lock (LogsDirBusy when another run holds it and no subfolder
        may be used), open conductor.log there, and remove the previous run's summary."""
        try:
            self._lock()
            self.locked = True
            self._log_handler = logs.setup_event_log(self.path)
        except OSError as exc:
            self.release()
            raise self.unusable(exc) from None
        if problem := summary.forget(self.path):
            self.reporter.warning(problem)

    def _lock(self) -> None:
        """Own the logs folder; when another run holds it and we may, use a subfolder of
        it instead, so simultaneous runs (two `nox -s e2e`) both go ahead."""
        try:
            self.rundir.lock()
        except LogsDirBusy:
            if not self.subfolder_if_busy:
                raise
            busy = self.path
            self.path, made = runfolders.subfolder(busy)
            self.rundir = RunDir(self.path)
            self.rundir.lock()
            runfolders.claim(self.path, self.run_id, made=made)
            self.reporter.info(f"{busy} is used by another run; this run logs to {self.path}")

    def prune(self) -> None:
        """Finished run-PID subfolders of the configured logs folder beyond the newest
        few go (runfolders.py); whatever goes wrong is one warning, never the run's end."""
        warning = runfolders.prune(self.base).warning()
        if warning:
            self.reporter.warning(warning)

    def unusable(self, exc: OSError) -> ConfigError:
        """One line for a logs folder that is a file, lies under a file, or is not
        writable: which folder, what is wrong, and where it was configured."""
        message = (
            f"cannot use {self.path} as the logs folder "
            f"({safe_io.why_unusable(self.path, exc)}); "
            "point it at a folder conductor can create and write"
        )
        if self._given:
            return ConfigError(message, key="--logs-dir")
        return ConfigError(message, file=self.config.file, key="logs_dir")

    def begin_record(self, mark: ownership.Mark) -> None:
        """The run record, then the watchdog: if conductor dies from here on, before
        any service has started, the watchdog cleans up. OSError when the record cannot
        be written."""
        self.rundir.begin(mark)
        self.watchdog = watchdog.start(self.path, self.run_id, self.rundir.lock_fd)
        if self.watchdog is not None:
            logs.logger.debug("watchdog: pid %d", self.watchdog.pid)
            self.rundir.tell = self.watchdog.tell
        elif not portable.WINDOWS:
            logs.logger.warning("watchdog: could not be started; if conductor dies, run clean")

    def dismiss_watchdog(self) -> None:
        """Everything is stopped: the watchdog goes, before the lock it shares."""
        self.rundir.tell = None
        if self.watchdog is not None:
            with logs.step("told the watchdog the run is over, and waited for it to exit"):
                self.watchdog.dismiss()
            self.watchdog = None

    def close(self, record: summary.Summary | None, *, table: bool) -> None:
        """The run's last step: summary.json and report.html from `record` (then the
        closing table, with `table`), while the folder is still the run's; then it is
        let go. Idempotent."""
        if record is not None:
            with logs.step("wrote summary.json and report.html"):
                summary.write(self.path, record, self.reporter, table=table)
        if self._log_handler is not None:
            logs.logger.info("teardown: over; letting go of %s", self.path)
        self.release()

    def release(self) -> None:
        """Let go of the folder: conductor.log closed, a run-PID subfolder's marker
        stamped with the run's end, the lock released (its file removed). Idempotent."""
        if self._log_handler is not None:
            logs.close_event_log(self._log_handler)
            self._log_handler = None
        if self.locked:
            runfolders.finish(self.path, self.run_id)
            self.rundir.release()
            self.locked = False
