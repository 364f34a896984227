"""One-shot tasks, fail.log lines, HTTP bodies, and COMMAND stopped when a service dies:
each against real processes (issue 12)."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from conductor.process import start_stop
from support import PY, fake


def read_summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "logs" / "summary.json").read_text())


def py(code: str) -> list[str]:
    return [PY, "-c", code]


# The task writes its end time last; the dependent writes its start time first. On main,
# kind = "task" is refused (exit 2).
MIGRATE = (
    "import pathlib, time\n"
    "time.sleep(0.3)\n"
    "print('migrated', flush=True)\n"
    "pathlib.Path('migrated').write_text(repr(time.time()))"
)
API = (
    "import pathlib, time\n"
    "pathlib.Path('api-started').write_text(repr(time.time()))\n"
    "print('listening', flush=True)\n"
    "time.sleep(60)"
)
CHECK_ORDER = (
    "import pathlib\n"
    "done = float(pathlib.Path('migrated').read_text())\n"
    "began = float(pathlib.Path('api-started').read_text())\n"
    "raise SystemExit(0 if done <= began else 7)"
)


def test_task_runs_to_completion_before_its_dependents(conductor, config, tmp_path):
    config(
        {
            "prestart": {"kind": "task", "command": py(MIGRATE)},
            # Ready once it has written its start time: COMMAND reads it.
            "api": {
                "command": py(API),
                "depends_on": ["prestart"],
                "ready": {"log": "listening"},
            },
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", *py(CHECK_ORDER))
    assert result.code == 0, result.text
    assert "prestart: completed" in result.err
    services = read_summary(tmp_path)["services"]
    assert services["prestart"]["status"] == "completed"
    assert services["prestart"]["duration_s"] >= 0.3
    assert services["prestart"]["exit_code"] == 0
    assert services["prestart"]["outcome"] == "completed"
    assert services["api"]["outcome"] == "stopped"
    # Its absence after it completed is not a death.
    assert "died" not in result.err
    assert "while the command ran" not in result.err


def test_failing_task_fails_the_run_with_its_status_and_tail(conductor, config, tmp_path):
    config(
        {
            "prestart": {
                "kind": "task",
                "command": py("print('alembic: no such table', flush=True); raise SystemExit(3)"),
            },
            "api": {"command": py(API), "depends_on": ["prestart"]},
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert "service 'prestart' exited with status 3 (a task must exit 0)" in result.err
    assert "prestart | alembic: no such table" in result.err
    assert not (tmp_path / "api-started").exists()


def test_task_that_does_not_finish_in_ready_timeout_is_stopped(conductor, config, tmp_path):
    config(
        {
            "prestart": {
                "kind": "task",
                "command": py("import time; time.sleep(60)"),
                "ready_timeout": 0.5,
            }
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert "service 'prestart' did not finish within 0.5s (ready_timeout)" in result.err
    assert result.seconds < 30


def test_task_with_a_port_is_a_config_error(conductor, config, tmp_path):
    config({"prestart": {"kind": "task", "command": py("pass"), "port": "auto"}})
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "service 'prestart', key 'port': a kind = \"task\"" in result.err
    assert "Traceback" not in result.text


def test_check_names_the_variables_command_gets(conductor, config, tmp_path):
    """A task has no address (COMMAND gets no PRESTART_URL), and a service without a
    port gets NAME_HOST only: check must not promise a variable that never comes."""
    config(
        {
            "prestart": {"kind": "task", "command": py("pass")},
            "worker": {"command": py("pass")},
            "api": {"command": py("pass"), "port": "auto", "depends_on": ["prestart"]},
        }
    )
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 0, result.text
    lines = {line.split(":")[0].strip(): line for line in result.out.splitlines()}
    assert lines["prestart"].endswith(" env=-"), result.out
    assert lines["worker"].endswith(" env=WORKER_HOST"), result.out
    assert lines["api"].endswith(" env=API_HOST,API_PORT,API_URL"), result.out


FATAL_EARLY = (
    "import time\n"
    "print('FATAL: password authentication failed for user \"app\"', flush=True)\n"
    "time.sleep(60)"
)


def test_fail_log_line_fails_the_run_before_ready_timeout(conductor, config, tmp_path):
    config(
        {
            "backend": {
                "command": py(FATAL_EARLY),
                "port": "auto",
                "ready_timeout": 60,
                "fail": {"log": ["nothing like this", "password authentication failed"]},
            }
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert (
        "service 'backend' printed a fatal line (fail.log 'password authentication failed'): "
        "'FATAL: password authentication failed for user \"app\"'" in result.err
    )
    assert "backend | FATAL: password" in result.err  # the tail
    assert result.seconds < 15  # not the 60 s of ready_timeout


FATAL_LATER = (
    "import pathlib, time\n"
    "print('READY to serve', flush=True)\n"
    "while not pathlib.Path('command-started').exists(): time.sleep(0.01)\n"
    "print('FATAL: the database went away', flush=True)\n"
    "time.sleep(60)"
)
LONG_COMMAND = (
    "import pathlib, signal, time\n"
    "def note(*_): pathlib.Path('command-got').write_text('SIGINT')\n"
    "signal.signal(signal.SIGINT, note)\n"  # ignores it: only the kill can stop it
    "pathlib.Path('command-started').write_text('')\n"
    "time.sleep(40)"
)


def test_fail_log_after_ready_stops_the_command(conductor, config, tmp_path):
    config(
        {
            "backend": {
                "command": py(FATAL_LATER),
                "ready": {"log": "READY"},
                "fail": {"log": "^FATAL"},
            }
        }
    )
    result = conductor.run(
        "run", "--config", "conductor.toml", "--stop-grace", "1", "--", *py(LONG_COMMAND)
    )
    assert result.code == 125, result.text
    assert "'FATAL: the database went away'" in result.err
    assert (tmp_path / "command-got").read_text() == "SIGINT"
    assert result.seconds < 1 + 15  # the grace and a bound, not the command's 40 s


# A traceback as Python prints one, written over time: the line fail.log finds comes
# first, the line that explains it last. {after} is what the service does then.
TRACEBACK = (
    "import pathlib, sys, time\n"
    "{before}"
    "lines = ['Traceback (most recent call last):', '  File \"app.py\", line 3, in <module>',"
    " '    import genesis_missing', \"ModuleNotFoundError: No module named 'genesis_missing'\"]\n"
    "for line in lines:\n"
    "    sys.stderr.write(line + '\\n'); sys.stderr.flush(); time.sleep(0.2)\n"
    "{after}"
)
EXPLAINED = "backend | ModuleNotFoundError: No module named 'genesis_missing'"


def traceback_service(after: str, before: str = "") -> dict[str, object]:
    return {
        "command": py(TRACEBACK.format(before=before, after=after)),
        "ready": {"log": "READY"},
        "fail": {"log": "Traceback"},
    }


def test_fail_log_tail_waits_for_the_traceback_to_end(conductor, config, tmp_path):
    """The tail is read once the service has exited, not the instant the first line
    matched: it ends with the traceback's last line (issue 19 item 4)."""
    config({"backend": traceback_service("sys.exit(1)")})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert "printed a fatal line (fail.log 'Traceback')" in result.err
    assert EXPLAINED in result.err
    log = (tmp_path / "logs" / "conductor.log").read_text()
    assert "after its fatal line: it exited" in log, log


def test_fail_log_tail_of_a_service_that_goes_quiet(conductor, config, tmp_path):
    """A service that prints its traceback and hangs on: the tail is read once its
    output has been quiet for 0.5 s."""
    config({"backend": traceback_service("time.sleep(60)")})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert EXPLAINED in result.err
    log = (tmp_path / "logs" / "conductor.log").read_text()
    assert "after its fatal line: its output was quiet for 0.5s" in log, log
    assert result.seconds < 30  # not the 60 s it would hang


def test_fail_log_tail_after_ready_waits_too(conductor, config, tmp_path):
    """A traceback while COMMAND runs: the failure's tail has its last line, and
    COMMAND is stopped."""
    ready_then_wait = (
        "print('READY', flush=True)\n"
        "while not pathlib.Path('command-started').exists(): time.sleep(0.01)\n"
    )
    config({"backend": traceback_service("time.sleep(60)", before=ready_then_wait)})
    result = conductor.run(
        "run", "--config", "conductor.toml", "--stop-grace", "1", "--", *py(LONG_COMMAND)
    )
    assert result.code == 125, result.text
    assert "while the command ran" in result.err or "printed a fatal line" in result.err
    assert EXPLAINED in result.err
    assert (tmp_path / "command-got").read_text() == "SIGINT"


def test_fail_log_tail_of_a_service_that_never_stops_writing_is_bounded(
    conductor, config, tmp_path
):
    """The wait has its own deadline: a service that goes on writing after its fatal
    line gets 2 s, then its tail is what it had written by then."""
    chatter = "while True:\n    print('still here', flush=True); time.sleep(0.05)\n"
    config({"backend": traceback_service(chatter)})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert EXPLAINED in result.err
    log = (tmp_path / "logs" / "conductor.log").read_text()
    waited = re.search(r"backend: waited ([\d.]+)s after its fatal line: it is still writing", log)
    assert waited, log
    assert 2.0 <= float(waited.group(1)) < 10, log
    assert result.seconds < 30


def test_fail_log_regex_is_checked_as_bytes(conductor, config, tmp_path):
    config({"backend": {"command": py("pass"), "fail": {"log": ["ok", "(unclosed"]}}})
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "service 'backend', key 'fail.log[1]': is not a valid regular expression" in result.err


def test_http_body_must_match(conductor, config, tmp_path):
    service = {"command": fake("http", "--port", "{port}"), "port": "auto"}
    config({"web": {**service, "ready": {"http": "/health", "body": "^fake /health$"}}})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text

    config({"web": {**service, "ready": {"http": "/health", "body": "ok"}, "ready_timeout": 1}})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    assert "was not ready after 1s" in result.err
    assert "with a body matching 'ok'" in result.err


def test_body_goes_only_with_http(conductor, config, tmp_path):
    config({"web": {"command": py("pass"), "ready": {"log": "x", "body": "ok"}}})
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "key 'ready.body': 'body' goes only with http" in result.err


DIES = {"command": fake("die-later", "--port", "{port}", "--text", "0.3"), "port": "auto"}
SLEEPS_40 = "import pathlib, time\npathlib.Path('command-started').write_text('')\ntime.sleep(40)"


def test_service_dying_stops_a_long_command(conductor, config, tmp_path):
    config({"svc": DIES})
    result = conductor.run("run", "--config", "conductor.toml", "--", *py(SLEEPS_40))
    assert result.code == 125, result.text
    assert "service 'svc' exited with status 3 while the command ran" in result.err
    assert "service 'svc' failed while the command ran: stopping the command" in result.err
    assert result.seconds < 5 + 15  # default grace and a bound, not 40 s


def test_keep_going_lets_the_command_finish(conductor, config, tmp_path):
    config({"svc": DIES})
    wait = (
        "import pathlib, time\n"
        "log = pathlib.Path('logs/conductor.log')\n"
        "report = ' '.join(['svc', 'exited', 'with', 'status', '3'])\n"
        "while report not in log.read_text(): time.sleep(0.01)\n"
        "time.sleep(0.5)\n"  # stopped by default by now; --keep-going: not stopped
        "pathlib.Path('command-finished').write_text('')\n"
        "raise SystemExit(4)"
    )
    result = conductor.run(
        "run", "--config", "conductor.toml", "--keep-going", "--", *py(wait), timeout=60
    )
    assert result.code == 4, result.text
    assert (tmp_path / "command-finished").exists()


def test_stop_grace_must_be_a_number_of_seconds(conductor, config, tmp_path):
    config({"svc": DIES})
    for bad in ("nan", "-1", "inf"):
        result = conductor.run("run", "--config", "conductor.toml", "--stop-grace", bad, "--", PY)
        assert result.code == 2, result.text
        assert "--stop-grace must be" in result.err


def test_an_up_with_a_completed_task_can_be_attached_to(conductor, config, up, tmp_path):
    """The task's pid is gone once it completed: `--attach` must not take that for a
    service of the `up` that died (before: 'service prestart ... is not the one it
    started')."""
    path = config(
        {
            "prestart": {"kind": "task", "command": py("pass")},
            "web": {
                "command": fake("http", "--port", "{port}"),
                "port": "auto",
                "depends_on": ["prestart"],
            },
        }
    )
    up(path)
    result = conductor.run(
        "run", "--config", "conductor.toml", "--attach=require", "--", PY, "-c", "pass"
    )
    assert result.code == 0, result.text


@pytest.mark.parametrize(
    ("returncode", "gone", "forced", "expected"),
    [
        (-15, False, False, "stopped"),  # died by the stop signal it was sent
        (0, False, False, "stopped"),  # exited cleanly on it (PostgreSQL on SIGINT)
        (-9, False, True, "forced"),
        (3, True, False, "exited"),  # gone before the stop: ended by itself
        (-11, True, False, "signalled"),
        (-9, True, False, "signalled"),  # the OOM killer's SIGKILL is not conductor's
        (-11, False, False, "signalled"),  # crashed as the stop began, not yet reaped
    ],
)
def test_who_ended_a_process_is_told_by_facts(returncode, gone, forced, expected):
    got = start_stop.ending(returncode, gone=gone, forced=forced, stop_signal=signal.SIGTERM)
    assert got == expected
