"""--keep-logs N and [run].keep_logs: the files of the last N runs kept in runs/ of the
logs folder, pruned by the pruner of run-PID subfolders (README: "`_e2e_logs/`").
Runs, folders, locks and the processes holding them are real."""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from conductor.process import ownership
from conductor.rundir import lockfile, runfolders
from conductor.rundir.run_record import LOCK_NAME
from support import PY

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="flock and unlink of open files"),
]

MARK = ownership.FOLDER_MARK
# A kept run's folder: its start (UTC, ms) and the start of its run id.
NAME = re.compile(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}")
# The service writes its own run's id: a kept log shows whose it is.
SAYS_ITS_RUN = (
    "import os, time\nprint('run', os.environ['CONDUCTOR_RUN_ID'], flush=True)\ntime.sleep(60)"
)
RUN_FILES = ["conductor.log", "report.html", "summary.json", "svc.log"]


def one_service(config, **run: object) -> None:
    top: dict[str, object] = {"run": run} if run else {}
    config({"svc": {"command": [PY, "-c", SAYS_ITS_RUN], "ready": {"log": "^run "}}}, **top)


def a_run(conductor, *args: str, command: str = "pass"):
    return conductor.run("run", "--config", "conductor.toml", *args, "--", PY, "-c", command)


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def kept(logs: Path) -> list[Path]:
    """conductor's kept runs in runs/, in the order their names sort."""
    runs = logs / "runs"
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if ownership.run_folder_mark(p) is not None)


def old_kept(logs: Path, count: int) -> list[Path]:
    """Kept runs as earlier runs left them (an hour ago), oldest first."""
    made = []
    for i in range(count):
        folder = logs / "runs" / f"20200101T00000{i}.000Z-0000000{i}"
        folder.mkdir(parents=True)
        (folder / "svc.log").write_text("an old run's log\n")
        ownership.mark_run_folder(folder, "0" * 32, ended=time.time() - 3600 + i)
        made.append(folder)
    return made


def test_without_keep_logs_each_run_replaces_the_last_and_runs_is_never_made(
    conductor, config, tmp_path
):
    one_service(config)
    for _ in range(2):
        assert a_run(conductor).code == 0
    logs = tmp_path / "logs"
    assert not (logs / "runs").exists()
    assert summary_of(logs)["kept_in"] is None
    assert (logs / "svc.log").read_text() == f"run {summary_of(logs)['run_id']}\n"


def test_keep_logs_keeps_the_last_n_runs_whole_and_unchanged(conductor, config, tmp_path):
    """Each kept run has all its files as it left them (a later run replaces the logs
    folder's, never the kept ones), named so they sort as the runs started; summary.json
    says where its run is kept."""
    one_service(config)
    logs = tmp_path / "logs"
    ids = []
    for _ in range(3):
        result = a_run(conductor, "--keep-logs", "2")
        assert result.code == 0, result.text
        assert "warning" not in result.err, result.err
        ids.append(summary_of(logs)["run_id"])
    folders = kept(logs)
    assert len(folders) == 2, list((logs / "runs").iterdir())
    for folder, run_id in zip(folders, ids[1:], strict=True):
        assert NAME.fullmatch(folder.name), folder.name
        assert folder.name.endswith(run_id[:8])
        assert sorted(p.name for p in folder.iterdir() if p.name != MARK) == RUN_FILES
        assert (folder / "svc.log").read_text() == f"run {run_id}\n"
        assert summary_of(folder)["run_id"] == run_id
        assert summary_of(folder)["kept_in"] == str(folder)
        assert "teardown: over; letting go of" in (folder / "conductor.log").read_text()
        mark = ownership.run_folder_mark(folder)
        assert mark is not None
        assert mark.ended is not None
        assert not (folder / LOCK_NAME).exists()
    assert summary_of(logs)["kept_in"] == str(folders[-1])
    assert (logs / "svc.log").read_text() == f"run {ids[-1]}\n"
    events = (logs / "conductor.log").read_text()
    assert re.search(r"teardown: kept the run's files in [\d.]+s \(.*1 older pruned\)", events)


def test_keep_logs_of_run_table_and_zero_deletes_only_what_conductor_kept(
    conductor, config, tmp_path
):
    """[run].keep_logs keeps; --keep-logs 0 over it keeps none and deletes conductor's
    kept runs, and nothing else in runs/: a user's folder, a file, a link, a folder
    whose marker names another one."""
    one_service(config, keep_logs=3)
    logs = tmp_path / "logs"
    for _ in range(2):
        assert a_run(conductor).code == 0
    assert len(kept(logs)) == 2
    runs = logs / "runs"
    mine = runs / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (runs / "notes.txt").write_text("a file of mine")
    forged = runs / "20200101T000000.000Z-forged00"
    forged.mkdir()
    (forged / MARK).write_text(json.dumps({"run_id": "0" * 32, "logs_dir": "/elsewhere"}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    (outside / MARK).write_text(json.dumps({"run_id": "0" * 32, "logs_dir": str(runs / "x")}))
    (runs / "x").symlink_to(outside, target_is_directory=True)
    result = a_run(conductor, "--keep-logs", "0")
    assert result.code == 0, result.text
    assert "warning" not in result.err, result.err
    assert kept(logs) == []
    assert sorted(p.name for p in runs.iterdir()) == [forged.name, "mine", "notes.txt", "x"]
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in outside.iterdir()) == [MARK, "precious.txt"]
    assert summary_of(logs)["kept_in"] is None
    assert "pruned 2 finished kept run(s) in runs/" in (logs / "conductor.log").read_text()


HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_an_up_is_kept_when_it_ends(conductor, config, tmp_path, up):
    one_service(config, keep_logs=2)
    live = up(tmp_path / "conductor.toml")
    live.stop()
    logs = tmp_path / "logs"
    (folder,) = kept(logs)
    assert summary_of(logs)["action"] == "up"
    assert summary_of(logs)["kept_in"] == str(folder)
    assert (folder / "svc.log").read_text() == f"run {summary_of(folder)['run_id']}\n"


def test_a_run_in_a_run_pid_subfolder_is_kept_beside_the_others(conductor, config, tmp_path):
    """--if-busy subfolder: the run logs to run-PID/, and is kept in the logs folder's
    own runs/, with the others."""
    import subprocess

    one_service(config)
    logs = tmp_path / "logs"
    assert a_run(conductor, "--keep-logs", "5").code == 0
    holder = subprocess.Popen(
        [PY, "-c", HOLDER, str(logs / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        result = a_run(conductor, "--keep-logs", "5", "--if-busy", "subfolder")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert result.code == 0, result.text
    (subfolder,) = logs.glob("run-*")
    run_id = summary_of(subfolder)["run_id"]
    folders = kept(logs)
    assert len(folders) == 2
    assert folders[-1].name.endswith(run_id[:8])
    assert summary_of(subfolder)["kept_in"] == str(folders[-1])
    assert (folders[-1] / "svc.log").read_text() == f"run {run_id}\n"
    assert not (subfolder / "runs").exists()


def test_two_runs_ending_at_once_keep_both_and_prune_to_n(conductor, config, tmp_path):
    """Two runs (one in a run-PID subfolder) end at the same moment: both are kept,
    the older kept runs go, no folder is kept twice or pruned twice, nothing warns."""
    one_service(config)
    logs = tmp_path / "logs"
    old = old_kept(logs, 3)
    go = tmp_path / "go"
    go.mkdir()
    # Each COMMAND waits for the other's, so both runs end together.
    wait = (
        "import pathlib, sys, time; d = pathlib.Path(sys.argv[1]); "
        "(d / sys.argv[2]).write_text('x'); t = time.monotonic() + 30\n"
        "while len(list(d.glob('ran-*'))) < 2 and time.monotonic() < t: time.sleep(0.01)"
    )
    args = ["run", "--config", "conductor.toml", "--if-busy", "subfolder", "--keep-logs", "2"]
    procs = [conductor.start(*args, "--", PY, "-c", wait, str(go), f"ran-{i}") for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "warning" not in err, err
    ids = {summary_of(logs)["run_id"], *(summary_of(f)["run_id"] for f in logs.glob("run-*"))}
    folders = kept(logs)
    assert {f.name[-8:] for f in folders} == {run_id[:8] for run_id in ids}
    assert not any(folder.exists() for folder in old)
    assert sorted(p.name for p in (logs / "runs").iterdir()) == sorted(f.name for f in folders)
    assert not list((logs / "runs").rglob("*.lock"))


@pytest.mark.parametrize("what", ["symlink", "file"])
def test_a_runs_that_is_a_link_or_a_file_is_refused_in_one_line(conductor, config, tmp_path, what):
    one_service(config)
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    if what == "symlink":
        (logs / "runs").symlink_to(target, target_is_directory=True)
    else:
        (logs / "runs").write_text("mine")
    result = a_run(conductor, "--keep-logs", "3")
    assert result.code == 2, result.text
    lines = [line for line in result.err.splitlines() if "runs" in line]
    assert len(lines) == 1, result.err
    assert f"key '--keep-logs': cannot keep logs: {logs / 'runs'} is a" in lines[0]
    assert ("is a symbolic link" if what == "symlink" else "is a file") in lines[0]
    assert "Traceback" not in result.text
    assert list(target.iterdir()) == []
    assert not (logs / "svc.log").exists()  # refused before anything started
    if what == "file":
        assert (logs / "runs").read_text() == "mine"


@pytest.mark.parametrize("value", ["-1", "2.5", "many", "", "٣"])
def test_a_keep_logs_that_is_no_number_of_runs_is_one_line_and_exit_2(
    conductor, config, tmp_path, value
):
    one_service(config)
    result = a_run(conductor, f"--keep-logs={value}")
    assert result.code == 2, result.text
    assert result.err.count("\n") == 1, result.err
    assert "--keep-logs must be a whole number of runs to keep, 0 or more" in result.err
    assert f"not {value!r}" in result.err
    assert "Traceback" not in result.text
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("value", ["-1", "2.5", "true", '"3"'])
def test_a_keep_logs_key_that_is_no_number_of_runs_is_one_line_and_exit_2(
    conductor, config, tmp_path, value
):
    one_service(config)
    path = tmp_path / "conductor.toml"
    path.write_text(
        path.read_text().replace("\n[services", f"\n[run]\nkeep_logs = {value}\n\n[services", 1)
    )
    result = a_run(conductor)
    assert result.code == 2, result.text
    assert result.err.count("\n") == 1, result.err
    assert "key 'run.keep_logs': must be a whole number of runs to keep" in result.err
    assert "Traceback" not in result.text


def test_a_file_that_cannot_be_linked_is_copied(tmp_path, monkeypatch):
    """Where no hard link can be made (runs/ on another file system), the file is
    copied: the kept run is whole all the same."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "svc.log").write_text("the log\n")
    keeping = runfolders.begin_keep(logs, "1" * 32, time.time())
    assert isinstance(keeping, runfolders.Keeping)

    def no_link(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(runfolders.os, "link", no_link)
    assert runfolders.finish_keep(keeping, [logs / "svc.log", logs / "missing.log"]) == []
    assert (keeping.folder / "svc.log").read_text() == "the log\n"
    assert os.stat(keeping.folder / "svc.log").st_ino != os.stat(logs / "svc.log").st_ino
    assert not (keeping.folder / "missing.log").exists()
    assert not (keeping.folder / LOCK_NAME).exists()


def test_pruning_waits_for_another_runs_pruning_with_a_deadline(tmp_path, monkeypatch):
    """runs/ is pruned by one run at a time; a pruning lock held too long is one
    warning, not a hang."""
    logs = tmp_path / "logs"
    old_kept(logs, 2)
    held = lockfile.take(logs / "runs" / ".conductor-prune.lock")
    monkeypatch.setattr(runfolders, "_PRUNE_WAIT", 0.2)
    try:
        pruned = runfolders.prune_kept(logs, 0)
    finally:
        held.close()
    assert pruned.removed == []
    warning = pruned.warning()
    assert warning is not None
    assert "is pruning" in warning
    assert len(kept(logs)) == 2
    assert len(runfolders.prune_kept(logs, 0).removed) == 2
