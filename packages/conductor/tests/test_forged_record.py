"""A run record is a hint, never an authority: `conductor clean` on a forged or
malformed `.conductor-run.json` never signals a process conductor did not start, never
deletes a folder it did not make, and never ends in a traceback.

Found by forging records by hand (issue 11, rule 1 and known defect 7)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from support import PY, Conductor


def _bystander() -> psutil.Popen:
    """A process of this test's own, carrying no conductor marker."""
    return psutil.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_right_pid_and_start_time_without_the_marker_is_not_signalled(
    conductor: Conductor, tmp_path: Path
) -> None:
    """Start time alone proves nothing: anyone can read it from /proc. Without the
    run's marker in its environment, the process is not the run's."""
    logs = tmp_path / "logs"
    logs.mkdir()
    bystander = _bystander()
    try:
        entry = {
            "service": "x",
            "pid": bystander.pid,
            "pgid": bystander.pid,
            "created": bystander.create_time(),
            "stop_signal": "SIGKILL",
        }
        (logs / ".conductor-run.json").write_text(
            json.dumps({"run_id": "forged", "processes": [entry]})
        )
        result = conductor.run("clean", "--logs-dir", "logs")
        assert result.code == 0, result.text
        assert bystander.is_running()
        assert bystander.status() != psutil.STATUS_ZOMBIE
        assert "Traceback" not in result.text
    finally:
        bystander.kill()
        bystander.wait()


MALFORMED = {
    "list": b"[1, 2, 3]",
    "pid_is_text": b'{"run_id": "x", "processes": [{"pid": "abc", "created": 1}]}',
    "missing_keys": b'{"run_id": "x", "processes": [{}]}',
    "processes_not_a_list": b'{"run_id": "x", "processes": 5}',
    "entries_not_tables": b'{"run_id": "x", "processes": [1, 2]}',
    "pid_1e400": b'{"run_id": "x", "processes": [{"pid": 1e400, "created": 1e400}]}',
    "pid_nan": b'{"run_id": "x", "processes": [{"pid": NaN, "created": NaN}]}',
    "pid_bool": b'{"run_id": "x", "processes": [{"pid": true, "created": 0}]}',
    "deeply_nested": b"[" * 100_000 + b"]" * 100_000,
    "folders_not_a_list": b'{"run_id": "x", "processes": [], "folders": 7}',
    "folders_not_text": b'{"run_id": "x", "processes": [], "folders": [1, null, {}]}',
    "folder_with_nul": b'{"run_id": "x", "processes": [], "folders": ["/tmp/conductor-pg-\\u0000x"]}',
    "binary": bytes(range(256)) * 64,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_clean_on_a_record_of_any_shape_is_one_line_at_most(
    conductor: Conductor, tmp_path: Path, name: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / ".conductor-run.json").write_bytes(MALFORMED[name])
    result = conductor.run("clean", "--logs-dir", "logs")
    assert "Traceback" not in result.text, result.text
    assert result.code == 0, result.text
    assert len(result.err.strip().splitlines()) <= 1, result.err


def test_a_marked_folder_outside_the_temporary_directory_is_never_deleted(
    conductor: Conductor, tmp_path: Path
) -> None:
    """conductor makes its cluster folders only in the temporary directory, so a
    folder elsewhere is not its own, whatever its name and marker file say."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    elsewhere = tmp_path / "mine" / "conductor-pg-precious"
    elsewhere.mkdir(parents=True)
    (elsewhere / "conductor-postgres.json").write_text(json.dumps({"run_id": "forged"}))
    (elsewhere / "data.txt").write_text("keep me")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / ".conductor-run.json").write_text(
        json.dumps({"run_id": "forged", "processes": [], "folders": [str(elsewhere)]})
    )
    conductor.env["TMPDIR"] = str(tmpdir)
    assert Path(tempfile.gettempdir()) != tmp_path / "mine"
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert (elsewhere / "data.txt").read_text() == "keep me"


def test_clean_never_signals_itself_or_its_caller(conductor: Conductor, tmp_path: Path) -> None:
    """A record naming the caller's pid (with its true start time) leaves it alone."""
    logs = tmp_path / "logs"
    logs.mkdir()
    me = psutil.Process(os.getpid())
    entry = {"service": "x", "pid": me.pid, "created": me.create_time(), "stop_signal": "SIGCONT"}
    (logs / ".conductor-run.json").write_text(json.dumps({"run_id": "f", "processes": [entry]}))
    result = subprocess.run(
        conductor.argv("clean", "--logs-dir", "logs"),
        cwd=conductor.cwd,
        env=conductor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stopped" not in result.stdout, result.stdout


def test_clean_of_a_folder_that_does_not_exist_creates_nothing(
    conductor: Conductor, tmp_path: Path
) -> None:
    """clean only looks: a mistyped --logs-dir must not leave a new folder behind."""
    result = conductor.run("clean", "--logs-dir", "no/such/logs")
    assert result.code == 0, result.text
    assert not (tmp_path / "no").exists()


def test_clean_says_a_live_run_in_a_subfolder_is_still_going(
    conductor: Conductor, tmp_path: Path
) -> None:
    """A run-PID subfolder held by a live run: clean must not say 'nothing left behind'
    and exit 0 (a later `invoke clean` then deleted the live run's folder)."""
    from conductor.rundir.run_record import RunDir

    live = RunDir(tmp_path / "logs" / "run-1")
    live.lock()  # this test is the live run
    try:
        result = conductor.run("clean", "--logs-dir", "logs")
    finally:
        live.release()
    assert result.code != 0, result.text
    assert "run-1" in result.err, result.err
    assert "nothing left behind" not in result.out
    assert len(result.err.strip().splitlines()) == 1, result.err
