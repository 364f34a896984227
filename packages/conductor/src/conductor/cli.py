"""`conductor run|up|check|clean`: a thin layer over the API, which owns the behaviour."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from conductor import errors, runner
from conductor.config.loading import Config, load_config
from conductor.environment import Address, address_env
from conductor.plan import make_plan
from conductor.probes import describe
from conductor.process.subreaper import Subreaper
from conductor.report.console import Reporter, redact
from conductor.rundir import folder_rules

USAGE_RUN = "conductor run [options] [SERVICE ...] -- COMMAND [ARG ...]"
# conductor.attach's ATTACH_MODES, spelled out as the pytest plugin does: importing
# attach (hashlib, the record's proofs, the container engine) waits for an --attach
# (test_start_imports.py checks both that it does and that the two agree).
ATTACH_MODES = ("auto", "never", "require")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conductor",
        description="Start services in dependency order, wait until they are ready, run a "
        "command inside them, and always tear everything down.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def stack_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            help="pyproject.toml or standalone TOML file "
            "(default: the nearest conductor.toml, or pyproject.toml with [tool.conductor])",
        )
        p.add_argument(
            "--logs-dir",
            help="where logs, summary.json and the run "
            "record go (default: logs_dir from the configuration)",
        )
        p.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help="stop everything and exit 124 after this long",
        )
        p.add_argument(
            "--auto-ports", action="store_true", help="replace every fixed port with a free one"
        )
        p.add_argument(
            "--show-logs",
            action="store_true",
            help="also stream every service's output to the console",
        )
        p.add_argument(
            "--if-busy",
            choices=["fail", "subfolder"],
            default="fail",
            help="when another run uses the logs folder: fail (default), or log to "
            "a run-PID subfolder of it",
        )
        p.add_argument(
            "--keep-logs",
            metavar="N",
            help="keep the files of the last N runs in runs/ of the logs folder (0 keeps "
            "none; default: [run].keep_logs, else none: each run replaces the last one's)",
        )
        p.add_argument(
            "--env",
            action="append",
            default=[],
            metavar="NAME=TEMPLATE",
            help="set NAME for COMMAND, e.g. TEST_DATABASE_URL={services.db.url} (repeatable)",
        )
        p.add_argument(
            "services",
            nargs="*",
            metavar="SERVICE",
            help="services to start (default: all); dependencies come along",
        )

    run = sub.add_parser("run", usage=USAGE_RUN, help="start services, run COMMAND, tear down")
    stack_options(run)
    run.add_argument(
        "--attach",
        choices=ATTACH_MODES,
        default="never",
        help="reuse a live `conductor up` of the same configuration and services in the "
        "same logs folder: nothing started, nothing stopped. --attach (=auto) starts a "
        "stack of its own when there is none to reuse; --attach=require fails instead",
    )
    run.add_argument(
        "--cwd",
        type=Path,
        metavar="DIR",
        help="run COMMAND in DIR (default: [run].cwd, else the current folder)",
    )
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="when a service dies while COMMAND runs, let COMMAND finish (the run still "
        "fails with 125 if COMMAND succeeds); by default COMMAND is stopped",
    )
    run.add_argument(
        "--stop-grace",
        type=float,
        default=runner.DEATH_GRACE,
        metavar="SECONDS",
        help="when a service dies, how long COMMAND has after SIGINT before its whole "
        f"tree is killed (default {runner.DEATH_GRACE:g})",
    )
    stack_options(sub.add_parser("up", help="start services and keep them until Ctrl-C"))
    check = sub.add_parser("check", help="validate the configuration and show the plan")
    check.add_argument("--config", type=Path, help="configuration file")
    check.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help="plan only these and what they depend on (default: all)",
    )
    clean = sub.add_parser("clean", help="stop what a killed run left behind")
    clean.add_argument("--config", type=Path, help="configuration file (for logs_dir)")
    clean.add_argument("--logs-dir", help="logs folder of the killed run")
    clean.add_argument(
        "--cache",
        action="store_true",
        help="empty the PostgreSQL template cache of the entries conductor made (alone, "
        "unless --config or --logs-dir is given too)",
    )
    return parser


def _open_closed_stdio() -> None:
    """Put /dev/null on fd 0, 1 or 2 when conductor was started with it closed
    (`>&-`), as daemons do. Left closed, the number goes to the next file conductor
    opens (the lock, a service's log), and COMMAND would inherit that file as its
    stdout. Python leaves sys.stdout/sys.stderr as None then; they get the same
    /dev/null, so output goes nowhere instead of ending the run."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)  # inheritable, like the stream it replaces
                os.close(null)
            else:
                os.set_inheritable(fd, True)
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    """The whole `conductor` command; its exit status."""
    return act(*read_arguments(sys.argv[1:] if argv is None else argv))


def read_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The parsed options and COMMAND (what follows `--`). Nothing is started yet: the
    launcher (conductor.__main__) answers Ctrl-C until this returns."""
    _open_closed_stdio()
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    # A bare --attach means --attach=auto; its value always follows an '='.
    argv = ["--attach=auto" if arg == "--attach" else arg for arg in argv]
    return _parser().parse_args(argv), command


def act(args: argparse.Namespace, command: list[str]) -> int:
    """Do what the arguments ask; the exit status."""
    reporter = Reporter()
    try:
        if args.action == "run":
            if not command:
                reporter.error(f"run needs a COMMAND after -- (usage: {USAGE_RUN})")
                return errors.EXIT_USAGE
            config = load_config(args.config)
            options = _options(args)
            with _subreaper() as subreaper:
                return asyncio.run(
                    runner.run(config, command, options, reporter, subreaper=subreaper)
                )
        if command:
            reporter.error(f"'{args.action}' takes no COMMAND after --")
            return errors.EXIT_USAGE
        if args.action == "up":
            config, options = load_config(args.config), _options(args)
            with _subreaper() as subreaper:
                return asyncio.run(runner.up(config, options, reporter, subreaper=subreaper))
        if args.action == "check":
            return _check(load_config(args.config), args.services or None)
        status = _clean_cache(reporter) if args.cache else 0
        if args.cache and args.logs_dir is None and args.config is None:
            return status
        logs_dir = _logs_dir_option(args)
        if logs_dir is None:
            logs_dir = load_config(args.config).logs_dir
        return _clean(logs_dir.resolve(), reporter) or status
    except errors.ConductorError as exc:
        reporter.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        # A Ctrl-C that no run's own handling answered (clean, --attach asking the
        # engine, a configuration being read): one line, never a silent 130.
        if args.action == "clean":
            reporter.error(
                "clean interrupted (Ctrl-C): what it had yet to stop is left as it was; "
                "run clean again"
            )
        else:
            reporter.error(f"{args.action} interrupted (Ctrl-C)")
        return errors.EXIT_SIGINT


@contextlib.contextmanager
def _subreaper() -> Iterator[Subreaper]:
    """The CLI's own process adopts the run's orphans for the length of the run; no
    library entry point does (README: What conductor will and won't touch)."""
    subreaper = Subreaper.claim()
    try:
        yield subreaper
    finally:
        subreaper.release()


def _clean(logs_dir: Path, reporter: Reporter) -> int:
    """`clean`: stdout says what was stopped and removed; a folder a live run holds is
    named on stderr and makes the status 2, so no script deletes a live run's logs."""
    if not logs_dir.is_dir():
        what = "is not a folder" if logs_dir.exists() else "does not exist"
        print(f"nothing left behind: {logs_dir} {what}")
        return 0
    done = asyncio.run(runner.clean(logs_dir))
    if done.warning:
        reporter.warning(done.warning)
    for line in done.waited:
        print(line)
    if done.stopped:
        print(f"stopped {len(done.stopped)} leftover process(es):")
        for line in done.stopped:
            print(f"  {line}")
    for folder in done.removed:
        print(f"removed {folder}")
    for busy in done.busy:
        reporter.error(busy)
    if done.busy:
        return errors.EXIT_USAGE
    if not done.stopped and not done.removed and not done.waited:
        print(f"nothing left behind in {logs_dir}")
    return 0


def _clean_cache(reporter: Reporter) -> int:
    """`clean --cache`: stdout names each entry removed; what was left alone is one
    warning line, what could not be removed one error line and status 2."""
    done = runner.clean_cache()
    for entry in done.removed:
        print(f"removed cache entry {entry}")
    if not done.removed:
        print(f"no cache entry to remove in {done.folder or 'the cache (no home folder)'}")
    if done.left:
        reporter.warning("left alone in the cache: " + " | ".join(done.left))
    if done.failed:
        reporter.error(" | ".join(done.failed))
        return errors.EXIT_USAGE
    return 0


def _logs_dir_option(args: argparse.Namespace) -> Path | None:
    """--logs-dir, resolved; None when not given. Kept as written until checked: an
    empty one (`--logs-dir "$UNSET"`) would otherwise be Path(""), the working folder."""
    if args.logs_dir is None:
        return None
    if problem := folder_rules.unfit(args.logs_dir):
        raise errors.ConfigError(problem, key="--logs-dir")
    return Path(args.logs_dir).resolve()


def _options(args: argparse.Namespace) -> runner.Options:
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise errors.ConductorError(f"--env wants NAME=TEMPLATE, not {item!r}")
        env[name] = value
    return runner.Options(
        env=env,
        subfolder_if_busy=args.if_busy == "subfolder",
        services=args.services,
        logs_dir=_logs_dir_option(args),
        timeout=args.timeout,
        auto_ports=args.auto_ports,
        show_logs=args.show_logs,
        attach=getattr(args, "attach", "never"),
        keep_going=getattr(args, "keep_going", False),
        stop_grace=getattr(args, "stop_grace", runner.DEATH_GRACE),
        cwd=args.cwd.resolve() if getattr(args, "cwd", None) else None,
        keep_logs=None if args.keep_logs is None else runner.parse_keep_logs(args.keep_logs),
    )


def _check(config: Config, services: list[str] | None = None) -> int:
    plan = make_plan(config, services, check_ports=False)
    print(f"configuration: {config.file}")
    print(f"logs: {config.logs_dir}")
    print(f"start order: {' -> '.join(plan.services)}")
    for name, service in plan.services.items():
        spec = service.spec
        port = "auto" if spec.port == "auto" else (service.port or "-")
        deps = ", ".join(service.depends_on) or "-"
        # env: what COMMAND will get, made as the run makes it. A task, done before
        # COMMAND starts, has no address; a service without a port has only NAME_HOST.
        if spec.kind == "task":
            ready, env = "exit 0", {}
        else:
            ready = describe(service.ready, service.host, service.port)
            env = address_env({name: Address(service.host, service.port, service.url)})
        # Data is masked where it stands (the URL's password; describe() masks the
        # probe's), never the line: `kind=postgres` stays whole whatever the password.
        print(
            f"  {name}: kind={spec.kind} port={port} url={redact(service.url) or '-'} "
            f"depends_on={deps} ready={ready} env={','.join(env) or '-'}"
        )
    for name, reason in plan.skipped.items():
        print(f"  {name}: skipped ({reason})")
    for key, why in plan.context.left_out.items():
        print(f"  {key}: left out ({why})")
    return 0


def _save_coverage() -> None:
    """os._exit skips atexit, where coverage.py writes its data: under a measured test
    run (coverage's subprocess patch), write it here. Costs nothing otherwise."""
    if "coverage" in sys.modules:
        import coverage

        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()


def leave(code: int) -> NoReturn:
    """Exit with `code` at once. Everything conductor started is already stopped and
    its files closed; skipping the interpreter's module teardown (tens of milliseconds
    once aiohttp is loaded) is most of a fast exit."""
    logging.shutdown()
    _save_coverage()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
