"""A run's logs folder, from taking it to letting it go: its lock (or, when another run
holds it and the run may, a run-PID subfolder of it), conductor.log, the run record and
the watchdog that shares the lock, the pruning of old run-PID subfolders, and at the end
summary.json, the run's files kept in runs/ (--keep-logs) and the release.

The Stack (stack.py) runs its services in it; what happens in the folder, and in what
order, is here, so that the Stack keeps the set of services and their order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from conductor.config import schema
from conductor.config.loading import Config
from conductor.errors import ConductorError, ConfigError, LogsDirBusy
from conductor.files import logs
from conductor.process import ownership, portable
from conductor.report.console import Reporter
from conductor.rundir import folder_rules, runfolders, watchdog
from conductor.rundir.run_record import RunDir

if TYPE_CHECKING:
    from conductor.report import summary


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
        keep_logs: int | None = None,
    ) -> None:
        self.config = config
        # --keep-logs: this many runs' files kept in runs/ of `base` (None: the
        # configuration's [run].keep_logs; None there too: runs/ is never looked at).
        if keep_logs is not None and not schema.is_runs_to_keep(keep_logs):
            raise ConductorError(f"keep_logs must be {schema.RUNS_TO_KEEP}, not {keep_logs!r}")
        self._keep_given = keep_logs is not None
        self.keep_logs = config.run.keep_logs if keep_logs is None else keep_logs
        self.kept: Path | None = None  # where this run's files are kept, once it is over
        self._keeping: runfolders.Keeping | None = None
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

    def check_runs(self) -> None:
        """With keep_logs, a runs/ that is a link or a file is refused before anything
        starts (exit 2), not found out when the run is over."""
        if self.keep_logs is None:
            return
        problem = runfolders.runs_problem(self.base)
        if problem is None:
            return
        message = f"cannot keep logs: {problem}"
        if self._keep_given:
            raise ConfigError(message, key="--keep-logs")
        raise ConfigError(message, file=self.config.file, key="run.keep_logs")

    def claim(self, written: Iterable[str]) -> None:
        """Take the folder's lock (LogsDirBusy when another run holds it and no subfolder
        may be used) and the folder as conductor's (folder_rules: never / or a home,
        never over the user's own files at the names `written`), open conductor.log
        there, and remove the previous run's summary."""
        try:
            folder_rules.check(self.path)
            self._lock()
            self.locked = True
            folder_rules.take(self.path, written)
            self._log_handler = logs.setup_event_log(self.path)
        except (OSError, folder_rules.Unfit) as exc:
            self.release()
            raise self.unusable(exc) from None
        if problem := logs.forget_reports(self.path):
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

    def unusable(self, exc: OSError | folder_rules.Unfit) -> ConfigError:
        """One line for a logs folder conductor cannot use (a file, under a file, not
        writable, unfit: folder_rules), and where it was configured."""
        message = folder_rules.why_not(self.path, exc)
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

    def begin_keep(self, started: float) -> None:
        """With keep_logs, this run's folder in runs/ (made now, filled by close()), so
        that summary.json can say where its files are kept."""
        if not self.keep_logs or not self.locked:
            return
        keeping = runfolders.begin_keep(self.base, self.run_id, started)
        if isinstance(keeping, str):
            self.reporter.warning(f"this run's logs are not kept (keep_logs): {keeping}")
            return
        self._keeping, self.kept = keeping, keeping.folder

    def _keep(self, service_logs: list[Path]) -> None:
        """This run's files into its folder in runs/, then runs/ pruned to keep_logs."""
        assert self.keep_logs is not None
        what = "kept the run's files" if self.kept else "kept none of the run's files"
        with logs.step(what) as notes:
            if self.kept is not None:
                notes.append(str(self.kept))
            problems: list[str] = []
            if self._keeping is not None:
                names = (logs.EVENT_LOG, *logs.REPORT_FILES)
                files = [self.path / name for name in names] + service_logs
                problems = runfolders.finish_keep(self._keeping, files)
                self._keeping = None
            pruned = runfolders.prune_kept(self.base, self.keep_logs)
            notes.append(f"keep_logs {self.keep_logs}: {len(pruned.removed)} older pruned")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            self.reporter.warning(f"keeping this run's logs in {self.kept}: {problems[0]}{more}")
        if warning := pruned.warning():
            self.reporter.warning(warning)

    def close(
        self, record: summary.Summary | None, *, table: bool, keep: list[Path] | None = None
    ) -> None:
        """The run's last step: summary.json and report.html from `record` (then the
        closing table, with `table`), while the folder is still the run's; with
        keep_logs, the run's files (those, conductor.log and the service logs `keep`)
        kept in runs/; then the folder is let go. Idempotent."""
        if record is not None:
            from conductor.report import summary  # its Structs: only once the run is over

            with logs.step("wrote summary.json and report.html"):
                summary.write(self.path, record, self.reporter, table=table)
        if keep is not None and self.locked and self.keep_logs is not None:
            self._keep(keep)
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
