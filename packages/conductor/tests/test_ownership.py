"""README, "What conductor will and won't touch": each rule against a victim this test
owns (a process it started, tracked by pid; a folder it made). A record on disk is a
hint: forged or stale entries are left alone, with one warning line."""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from support import PY, alive, fake, gone, wait_for, write_record

pytestmark = pytest.mark.conductor

RUN_ID = "0123456789abcdef0123456789abcdef"

# COMMAND: says it is running, then waits until the test lets it finish.
WAIT_FOR_GO = """
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
go.with_suffix('.running').write_text('yes')
for _ in range(6000):
    if go.exists(): break
    time.sleep(0.01)
"""


def mark_env(folder: Path, run_id: str = RUN_ID) -> dict[str, str]:
    """The mark of a process conductor started for a run logging to `folder`. (Spelt
    out, not taken from conductor.process.ownership, so these tests also run against older code.)"""
    return {
        "CONDUCTOR_RUN_ID": run_id,
        "CONDUCTOR_LOGS_DIR": str(folder.resolve()),
        "CONDUCTOR_SERVICE": "svc",
    }


def entry(proc: psutil.Process, pgid: int | None = None) -> dict[str, object]:
    pgid = proc.pid if pgid is None else pgid
    return {"service": "svc", "pid": proc.pid, "pgid": pgid, "created": proc.create_time()}


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def stop(pid: int) -> None:
    """Kill a process this test is responsible for, and wait until it is gone."""
    try:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(timeout=10)
    except psutil.NoSuchProcess:
        pass


# -- the subreaper: only the CLI's own process --------------------------------------------

SUBREAPER_FLAG = """
import ctypes
def subreaper():
    flag = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    return flag.value
"""


def test_run_command_spares_the_callers_own_child_and_makes_no_subreaper(
    conductor, config, tmp_path
):
    """Defect 1: the sweep took every descendant of the calling process."""
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    code = SUBREAPER_FLAG + (
        "import subprocess, sys\n"
        "from conductor import run_command\n"
        "own = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"status = run_command([sys.executable, '-c', 'pass'], config={str(tmp_path / 'conductor.toml')!r})\n"
        "print(status, own.poll(), subreaper(), flush=True)\n"
        "own.kill(); own.wait()\n"
    )
    proc = subprocess.run(
        [PY, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=conductor.env,
    )
    assert proc.stdout.split() == ["0", "None", "0"], proc.stdout + proc.stderr


def test_stack_will_not_make_a_library_caller_a_subreaper(conductor, config, tmp_path):
    """Defect 1: Stack(subreaper=True) made the caller a subreaper for good."""
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    code = SUBREAPER_FLAG + (
        "from conductor import Stack, load_config\n"
        f"config = load_config({str(tmp_path / 'conductor.toml')!r})\n"
        "try:\n"
        "    Stack(config, subreaper=True)\n"
        "except TypeError as exc:\n"
        "    print('refused', subreaper(), flush=True)\n"
        "else:\n"
        "    print('accepted', subreaper(), flush=True)\n"
    )
    proc = subprocess.run(
        [PY, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=conductor.env,
    )
    assert proc.stdout.split() == ["refused", "0"], proc.stdout + proc.stderr


def test_the_cli_sweeps_an_unmarked_orphan_of_its_run(conductor, config, tmp_path):
    """A daemon with an empty environment escapes group and mark; the CLI, as subreaper,
    adopts it and the sweep stops it."""
    pidfile = tmp_path / "daemon.pid"
    config(
        {
            "svc": {
                "command": fake("daemon-bare", "--port", "{port}", "--pidfile", str(pidfile)),
                "port": "auto",
            }
        }
    )
    script = (
        f"import pathlib, time\np = pathlib.Path({str(pidfile)!r})\n"
        "while not (p.exists() and p.read_text()): time.sleep(0.01)"
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", script)
    daemon = int(pidfile.read_text())
    try:
        assert result.code == 0, result.text
        assert gone(daemon)
        assert "escaped their service's process group" in result.err
    finally:
        stop(daemon)


def test_the_cli_spares_a_child_it_was_handed_before_the_run(conductor, config, tmp_path):
    """`sh -c 'x & exec conductor ...'` hands conductor a child that is not the run's:
    the sweep must leave it alone."""
    pidfile = tmp_path / "handed.pid"
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    handed = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    wait = f"import os, time\nwhile not os.path.exists({str(pidfile)!r}): time.sleep(0.01)"
    run = [PY, "-m", "conductor", "run", "--config", "conductor.toml", "--", PY, "-c", wait]
    # (its output elsewhere: it outlives conductor, and we read conductor's to the end)
    shell = f"{shlex.join([PY, '-c', handed])} >/dev/null 2>&1 & exec {shlex.join(run)}"
    proc = subprocess.run(
        ["sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=conductor.env,
    )
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="pidfile"))
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not gone(pid), proc.stderr
    finally:
        stop(pid)


# -- a recorded process: its start time and the run's mark ---------------------------------


def test_clean_leaves_alone_a_process_with_the_recorded_start_time_but_not_the_mark(
    conductor, tmp_path, bystander
):
    """Defect 7: a start time alone was taken as proof."""
    victim = bystander()
    write_record(tmp_path / "logs", {"run_id": RUN_ID, "processes": [entry(victim)]})
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert alive(victim)
    (line,) = warnings(result.err)
    assert f"pid {victim.pid} does not carry this run's mark" in line
    assert not (tmp_path / "logs" / ".conductor-run.json").exists()


def test_clean_never_signals_a_group_the_recorded_process_does_not_lead(
    conductor, tmp_path, bystander
):
    """Defect 7: a forged pgid made clean kill another session's group."""
    victim = bystander(session=True)  # leads a group of its own
    decoy = bystander(env=mark_env(tmp_path / "logs"))  # the run's, by start time and mark
    write_record(
        tmp_path / "logs", {"run_id": RUN_ID, "processes": [entry(decoy, pgid=victim.pid)]}
    )
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert alive(victim)
    (line,) = warnings(result.err)
    assert f"pid {decoy.pid}: its recorded group {victim.pid} is not its own" in line
    wait_for(lambda: not alive(decoy), what="the marked decoy to be stopped")


def test_clean_stops_a_proven_process_with_the_group_it_leads(conductor, tmp_path, bystander):
    """The positive case: start time and mark proven, its group is signalled too (a
    member that lost the mark goes with it)."""
    logs = tmp_path / "logs"
    # The leader starts a member of its group with an empty environment: no mark.
    code = (
        "import subprocess, sys, time\n"
        "member = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], env={})\n"
        "print('up', flush=True); print(member.pid, flush=True); time.sleep(120)"
    )
    leader = bystander(session=True, env=mark_env(logs), code=code)
    assert leader.stdout is not None
    member = psutil.Process(int(leader.stdout.readline()))
    try:
        write_record(logs, {"run_id": RUN_ID, "processes": [entry(leader)]})
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert f"pid {leader.pid}" in result.out
        assert warnings(result.err) == []
        wait_for(lambda: not alive(leader) and not alive(member), what="the group to go")
    finally:
        stop(member.pid)


def test_a_record_naming_a_live_runs_id_cannot_reach_that_run(conductor, config, tmp_path):
    """The mark holds the logs folder, and clean holds that folder's lock: a record in
    another folder that copies a live run's id and pids touches none of it."""
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    go = tmp_path / "go"
    run = conductor.start(
        "run", "--config", "conductor.toml", "--logs-dir", "a", "--", PY, "-c", WAIT_FOR_GO, str(go)
    )
    try:
        wait_for(lambda: go.with_suffix(".running").exists(), what="the command to run")
        record = json.loads((tmp_path / "a" / ".conductor-run.json").read_text())
        (svc,) = record["processes"]
        write_record(tmp_path / "b", record)
        result = conductor.run("clean", "--logs-dir", "b")
        assert result.code == 0, result.text
        assert alive(psutil.Process(svc["pid"]))
        (line,) = warnings(result.err)
        assert "does not carry this run's mark" in line
    finally:
        go.write_text("go")
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["services"]["svc"]["stopped"] == "stopped by SIGTERM"


# -- a folder: conductor made it, in the temp directory, with its marker ------------------


def test_clean_never_deletes_a_folder_conductor_did_not_make(conductor, tmp_path):
    """Defect 7: a forged `folders` entry made clean delete an arbitrary directory."""
    logs = tmp_path / "logs"
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    temp = Path(tempfile.gettempdir()).resolve()
    lookalike = Path(tempfile.mkdtemp(prefix="conductor-pg-")).resolve()  # no marker
    (lookalike / "keep.txt").write_text("mine")
    link = temp / f"conductor-link-{uuid.uuid4().hex}"
    link.symlink_to(outside)
    forged = [str(outside), str(lookalike), str(link), "victim", "../victim", 7]
    try:
        write_record(logs, {"run_id": RUN_ID, "processes": [], "folders": forged})
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert (outside / "keep.txt").read_text() == "mine"
        assert (lookalike / "keep.txt").read_text() == "mine"
        assert link.is_symlink()
        (line,) = warnings(result.err)
        assert "left alone what conductor cannot prove it started" in line
        assert "and 3 more" in line  # six forged entries, three shown
    finally:
        link.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(lookalike)], check=True)


def test_clean_removes_a_folder_conductor_made_for_that_run_only(conductor, tmp_path):
    from conductor.process import ownership

    logs = tmp_path / "logs"

    def made(run_id: str, folder: Path) -> Path:
        return ownership.make_folder(
            ownership.Mark(run_id, str(folder)), ownership.plan_folder("test")
        )

    ours = made(RUN_ID, logs.resolve())
    other_run = made("f" * 32, logs.resolve())
    other_folder = made(RUN_ID, tmp_path / "elsewhere")
    try:
        folders = [str(ours), str(other_run), str(other_folder)]
        write_record(logs, {"run_id": RUN_ID, "processes": [], "folders": folders})
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert f"removed {ours}" in result.out
        assert not ours.exists()
        assert other_run.is_dir()
        assert other_folder.is_dir()
        (line,) = warnings(result.err)
        assert line.count("was made by another run") == 2
    finally:
        for folder in (ours, other_run, other_folder):
            subprocess.run(["rm", "-rf", str(folder)], check=True)


# -- a record of any shape ---------------------------------------------------------------

SHAPES = {
    "a list": "[]",
    "null": "null",
    "a string": '"record"',
    "empty": "{}",
    "not JSON": "{not json",
    "not UTF-8": b"\xff\xfe{".decode("latin-1"),
    "run_id a number": '{"run_id": 5, "processes": []}',
    "processes a dict": json.dumps({"run_id": RUN_ID, "processes": {"pid": 1}}),
    "pid a string": json.dumps({"run_id": RUN_ID, "processes": [{"pid": "1", "created": 1.0}]}),
    "pid a bool": json.dumps({"run_id": RUN_ID, "processes": [{"pid": True, "created": 1.0}]}),
    "pid huge": json.dumps({"run_id": RUN_ID, "processes": [{"pid": 10**30, "created": 1.0}]}),
    "created missing": json.dumps({"run_id": RUN_ID, "processes": [{"pid": 1}]}),
    "pid missing": json.dumps({"run_id": RUN_ID, "processes": [{"created": 1.0}, None, 3]}),
    "created NaN": json.dumps(
        {"run_id": RUN_ID, "processes": [{"pid": 1, "created": float("nan")}]}
    ),
    "folders a string": json.dumps({"run_id": RUN_ID, "folders": "xy"}),
}


@pytest.mark.parametrize("text", list(SHAPES.values()), ids=list(SHAPES))
def test_clean_on_a_record_of_any_shape_warns_once_and_never_crashes(conductor, tmp_path, text):
    """Defect 5: a record of the wrong shape gave a traceback."""
    path = write_record(tmp_path / "logs", "")
    path.write_bytes(text.encode("latin-1"))
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert "Traceback" not in result.text
    assert len(warnings(result.err)) <= 1, result.err
    assert not path.exists()


# -- live runs and missing folders -------------------------------------------------------


def test_clean_names_a_live_run_in_a_subfolder_and_exits_2(conductor, config, tmp_path, bystander):
    """Defect 10: a busy run-PID subfolder was skipped in silence, and clean said
    "nothing left behind" with status 0, so `invoke clean` deleted the live run's logs.
    A dead run's subfolder beside it is still cleaned."""
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    go = tmp_path / "go"
    live = tmp_path / "logs" / "run-live"
    dead = tmp_path / "logs" / "run-dead"
    leftover = bystander(env=mark_env(dead))
    write_record(dead, {"run_id": RUN_ID, "processes": [entry(leftover)]})
    run = conductor.start(
        "run",
        "--config",
        "conductor.toml",
        "--logs-dir",
        str(live),
        "--",
        PY,
        "-c",
        WAIT_FOR_GO,
        str(go),
    )
    try:
        wait_for(lambda: go.with_suffix(".running").exists(), what="the command to run")
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 2, result.text
        (line,) = warnings(result.err)
        assert f"{live} is still in use by a running conductor (pid {run.pid})" in line
        assert f"pid {leftover.pid}" in result.out
        assert "nothing left behind" not in result.out
        wait_for(lambda: not alive(leftover), what="the dead run's leftover to go")
        assert (live / "svc.log").exists()
    finally:
        go.write_text("go")
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err


def test_clean_creates_nothing(conductor, tmp_path):
    """Defect 10: `clean --logs-dir` on a path that does not exist created it."""
    result = conductor.run("clean", "--logs-dir", "missing/logs")
    assert not (tmp_path / "missing").exists()
    assert result.code == 0, result.text
    assert "does not exist" in result.out
    (tmp_path / "empty").mkdir()
    result = conductor.run("clean", "--logs-dir", "empty")
    assert result.code == 0, result.text
    assert list((tmp_path / "empty").iterdir()) == []
