"""What the run meets on the machine, not in the configuration's syntax: a COMMAND that
cannot execute, a logs folder it cannot use, closed stdout/stderr, a host that is not
this machine's. Each ends in one line and the documented status, never a traceback."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from support import PY, fake, free_port

pytestmark = pytest.mark.conductor

# An address of no machine here (TEST-NET-3, RFC 5737): binding it fails locally with
# EADDRNOTAVAIL, before any packet could be sent.
FOREIGN_HOST = "203.0.113.1"


def _svc(config, **top: object) -> None:
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}}, **top)


def _one_line(text: str, needle: str) -> None:
    """`needle` is on exactly one line, and nothing looks like a traceback."""
    assert "Traceback" not in text, text
    assert sum(needle in line for line in text.splitlines()) == 1, text


def test_command_that_cannot_be_executed_exits_126_and_summary_agrees(conductor, config, tmp_path):
    """ENOEXEC: executable bit, but neither a binary nor a script with a #! line."""
    _svc(config)
    script = tmp_path / "no-shebang"
    script.write_text("echo this is not a program\n")
    script.chmod(0o755)
    result = conductor.run("run", "--config", "conductor.toml", "--", str(script))
    assert result.code == 126, result.text
    _one_line(result.err, "command cannot be executed")
    assert "#! line" in result.err
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["exit_code"] == 126
    assert summary["services"]["svc"]["stopped"] == "stopped by SIGTERM"


@pytest.mark.parametrize("how", ["file", "under-a-file", "option-under-a-file"])
def test_a_logs_folder_that_cannot_be_one_is_one_line_and_exit_2(conductor, config, tmp_path, how):
    """Root can write anywhere, so 'unusable' here is what stops root too: the folder
    is a file, or lies under one."""
    (tmp_path / "taken").write_text("a file, not a folder\n")
    args = ["run", "--config", "conductor.toml"]
    if how == "file":
        _svc(config, logs_dir="taken")
        key = "key 'logs_dir'"
    elif how == "under-a-file":
        _svc(config, logs_dir="taken/logs")
        key = "key 'logs_dir'"
    else:
        _svc(config)
        args += ["--logs-dir", "taken/logs"]
        key = "key '--logs-dir'"
    result = conductor.run(*args, "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    _one_line(result.err, "as the logs folder")
    assert key in result.err
    assert f"{tmp_path / 'taken'} is a file, not a folder" in result.err
    assert (tmp_path / "taken").read_text() == "a file, not a folder\n"
    assert not (tmp_path / "svc.log").exists()


def test_an_event_log_that_cannot_be_written_is_one_line_and_exit_2(conductor, config, tmp_path):
    """conductor.log is a folder: the open fails even for root (EISDIR)."""
    _svc(config)
    (tmp_path / "logs" / "conductor.log").mkdir(parents=True)
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    _one_line(result.err, "as the logs folder")
    assert "Is a directory" in result.err
    assert not (tmp_path / "logs" / "svc.log").exists()  # nothing was started


def test_a_service_log_that_cannot_be_written_fails_that_service(conductor, config, tmp_path):
    _svc(config)
    (tmp_path / "logs" / "svc.log").mkdir(parents=True)
    marker = tmp_path / "command-ran"
    result = conductor.run(
        "run", "--config", "conductor.toml", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert result.code == 125, result.text
    _one_line(result.err, "cannot write its log")
    assert not marker.exists()
    assert json.loads((tmp_path / "logs" / "summary.json").read_text())["exit_code"] == 125


COMMAND = "import sys; print('out'); raise SystemExit(7)"


@pytest.mark.parametrize("closed", [">&-", "2>&-", "<&- >&- 2>&-"])
def test_closed_stdout_or_stderr_still_tears_down_and_gives_command_status(
    conductor, config, tmp_path, closed
):
    """Started with a standard stream closed, conductor runs, tears down and exits with
    COMMAND's status, and summary.json agrees."""
    _svc(config)
    argv = conductor.argv("run", "--config", "conductor.toml", "--", PY, "-c", COMMAND)
    proc = subprocess.run(
        ["sh", "-c", f"exec {shlex.join(argv)} {closed}"],
        cwd=tmp_path,
        env=conductor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["exit_code"] == 7
    assert summary["services"]["svc"]["stopped"] == "stopped by SIGTERM"
    # a log file never took over a closed stream's number: COMMAND's output is not in it
    for log in (tmp_path / "logs").iterdir():
        if log.is_file():
            assert "out\n" not in log.read_text(errors="replace").splitlines(keepends=True), log


def test_stderr_whose_reader_is_gone_still_gives_command_status(conductor, config, tmp_path):
    """Every console line then fails with EPIPE; the run must not."""
    _svc(config)
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read what conductor reports
    try:
        proc = subprocess.run(
            conductor.argv("run", "--config", "conductor.toml", "--", PY, "-c", COMMAND),
            cwd=tmp_path,
            env=conductor.env,
            stdout=subprocess.PIPE,
            stderr=write_end,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 7, proc.stdout
    assert proc.stdout == "out\n"
    assert json.loads((tmp_path / "logs" / "summary.json").read_text())["exit_code"] == 7


@pytest.mark.parametrize("port", ["auto", "fixed"])
def test_a_host_this_machine_does_not_have_is_refused_before_anything_starts(
    conductor, config, tmp_path, port
):
    """Exit 2 naming the key: a configuration error, found before a process starts or
    a probe knocks (the log probe keeps even the unfixed code from sending anything)."""
    config(
        {
            "svc": {
                "command": fake("never"),
                "port": "auto" if port == "auto" else free_port(),
                "ready": {"log": "never printed"},
                "ready_timeout": 1,
            }
        },
        host=FOREIGN_HOST,
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    _one_line(result.err, "key 'host'")
    assert f"services cannot listen on '{FOREIGN_HOST}'" in result.err
    assert not (tmp_path / "logs" / "svc.log").exists()
    check = conductor.run("check", "--config", "conductor.toml")
    assert check.code == 2, check.text
    _one_line(check.err, "key 'host'")


def test_the_shell_really_closes_stdout(tmp_path: Path) -> None:
    """Guard for the test above: a shell's `>&-` really leaves fd 1 closed."""
    proc = subprocess.run(
        ["sh", "-c", f"exec {shlex.quote(PY)} -c 'import os; os.fstat(1)' >&-"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "Bad file descriptor" in proc.stderr


def _nothing_written(folder: Path, before: set[str]) -> None:
    """No file of conductor's appeared in `folder` (the working folder, a home)."""
    assert {p.name for p in folder.iterdir()} == before, sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("action", ["run", "up", "clean"])
def test_an_empty_logs_dir_option_is_refused(conductor, config, tmp_path, action):
    """issue 18, item 4: `--logs-dir "$UNSET"` was the working folder (Path('')), so
    conductor's files went wherever it was started."""
    _svc(config)
    before = {p.name for p in tmp_path.iterdir()}
    tail = ["--", PY, "-c", "pass"] if action == "run" else []
    result = conductor.run(
        action, "--config", "conductor.toml", "--logs-dir", "", *tail, timeout=60
    )
    assert result.code == 2, result.text
    _one_line(result.err, "--logs-dir")
    assert "empty" in result.err
    _nothing_written(tmp_path, before)


@pytest.mark.parametrize("action", ["check", "run"])
def test_an_empty_logs_dir_key_is_refused(conductor, config, tmp_path, action):
    _svc(config, logs_dir="")
    before = {p.name for p in tmp_path.iterdir()}
    tail = ["--", PY, "-c", "pass"] if action == "run" else []
    result = conductor.run(action, "--config", "conductor.toml", *tail)
    assert result.code == 2, result.text
    _one_line(result.err, "key 'logs_dir'")
    assert "empty" in result.err
    _nothing_written(tmp_path, before)


@pytest.mark.parametrize("how", ["option", "option-with-slash", "key"])
def test_the_users_home_is_no_logs_folder(conductor, config, tmp_path, how):
    """`--logs-dir "$UNSET/"` as root wrote conductor's files into /; the same slip with
    a home (`$HOME/$UNSET`) wrote them there. HOME is this test's own folder."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# the user's\n")
    conductor.env["HOME"] = str(home)
    args = ["run", "--config", "conductor.toml"]
    if how == "key":
        _svc(config, logs_dir=str(home))
        where = "key 'logs_dir'"
    else:
        _svc(config)
        args += ["--logs-dir", str(home) + ("/" if how == "option-with-slash" else "")]
        where = "key '--logs-dir'"
    result = conductor.run(*args, "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    _one_line(result.err, where)
    assert "home folder" in result.err
    _nothing_written(home, {".bashrc"})


@pytest.mark.parametrize("action", ["check", "clean"])
def test_the_root_folder_is_no_logs_folder(conductor, config, tmp_path, action):
    """`/` itself, as `check` (the key) and `clean` (the option) see it: neither writes
    anything even before this check, so this test cannot litter `/`. `run` and `up`
    meet the same check before anything is written (the home case above runs it)."""
    if action == "check":
        _svc(config, logs_dir="/")
        result = conductor.run("check", "--config", "conductor.toml")
    else:
        _svc(config)
        result = conductor.run("clean", "--config", "conductor.toml", "--logs-dir", "/")
    assert result.code == 2, result.text
    _one_line(result.err, "the root folder")


@pytest.mark.parametrize("name", ["report.html", "summary.json", "conductor.log", "svc.log"])
def test_a_folder_holding_the_users_own_files_at_conductors_names_is_refused(
    conductor, config, tmp_path, name
):
    """issue 18, item 4: `logs_dir = "."` at a project root with the user's own
    report.html: a run deleted it at its start and wrote its own there. Nothing of the
    user's is overwritten or removed, nothing is started."""
    _svc(config, logs_dir=".")
    (tmp_path / name).write_text("the user's own\n")
    before = {p.name for p in tmp_path.iterdir()}
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    _one_line(result.err, "as the logs folder")
    assert "key 'logs_dir'" in result.err
    assert f"{tmp_path / name}" in result.err
    assert (tmp_path / name).read_text() == "the user's own\n"
    _nothing_written(tmp_path, before)


def test_a_folder_conductor_has_used_is_its_own_to_write_again(conductor, config, tmp_path):
    """The other side: the project root with none of conductor's names in it is
    taken (and marked), and the next run replaces its own files there; so is a logs
    folder an earlier conductor left (its conductor.log, no mark)."""
    _svc(config, logs_dir=".")
    (tmp_path / "notes.txt").write_text("the user's own\n")
    for _ in range(2):
        result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
        assert result.code == 0, result.text
        assert json.loads((tmp_path / "summary.json").read_text())["exit_code"] == 0
    assert (tmp_path / "notes.txt").read_text() == "the user's own\n"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "conductor.log").write_text("09:15:02.117 INFO run 0123: starting\n")
    (earlier / "summary.json").write_text('{"run_id": "0123", "exit_code": 1}\n')
    result = conductor.run(
        "run", "--config", "conductor.toml", "--logs-dir", "earlier", "--", PY, "-c", "pass"
    )
    assert result.code == 0, result.text
    assert json.loads((earlier / "summary.json").read_text())["exit_code"] == 0


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example", "bad\x00host"])
def test_a_host_the_resolver_cannot_even_encode_is_one_line(conductor, config, host):
    """A name with an empty label, a label over 63 characters or a NUL byte: the
    resolver's idna codec raises UnicodeError (or ValueError), not OSError. Before: a
    UnicodeError traceback from `check` and `run` (found reviewing today's start work)."""
    config({"svc": {"command": fake("never"), "port": "auto"}}, host=host)
    for action in (["check"], ["run", "--", PY, "-c", "pass"]):
        result = conductor.run(action[0], "--config", "conductor.toml", *action[1:])
        assert result.code == 2, result.text
        assert "Traceback" not in result.err
        _one_line(result.err, "key 'host'")
