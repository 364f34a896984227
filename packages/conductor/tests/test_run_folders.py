"""run-PID subfolders are pruned to the newest few finished ones at the start of a run,
and a run's lock file goes away when it ends (README: "`_e2e_logs/`", "What conductor
will and won't touch"). Folders, locks and the processes holding them are real."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conductor.errors import LogsDirBusy
from conductor.process import ownership
from conductor.rundir import lockfile, runfolders
from conductor.rundir.folder_rules import MARK_NAME
from conductor.rundir.run_record import LOCK_NAME, RunDir
from support import PY, fake, plant_link

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform == "win32", reason="flock and unlink of open files"),
]

RUN_ID = "0123456789abcdef0123456789abcdef"
MARK = ownership.FOLDER_MARK

# Holds an flock on argv[1] (created if missing) until stdin closes: another run's lock.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def hold() -> Iterator[object]:
    """Start a process that holds the lock file `path` until the test ends."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [PY, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def finished(logs: Path, name: str, ended: float, *, files: int = 1) -> Path:
    """A run-PID subfolder as a finished run leaves it: conductor's marker, stamped."""
    folder = logs / name
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"svc{i}.log").write_text("a finished run's log\n")
    ownership.mark_run_folder(folder, RUN_ID, ended=ended)
    return folder


def seven(logs: Path) -> list[Path]:
    """Seven finished subfolders; newest first by end time, which is neither their
    names' order nor the order they were made in."""
    base = time.time() - 3600
    ends = {"run-101": 7, "run-107": 6, "run-102": 5, "run-106": 4, "run-103": 3}
    ends |= {"run-105": 2, "run-104": 1}
    return [finished(logs, name, base + end) for name, end in ends.items()]


def a_run(conductor, config, *args: str):
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    return conductor.run("run", "--config", "conductor.toml", *args, "--", PY, "-c", "pass")


def subfolders(logs: Path) -> set[str]:
    return {p.name for p in logs.iterdir() if p.name.startswith("run-")}


# --- pruning -------------------------------------------------------------------------


def test_seven_finished_subfolders_are_pruned_to_the_newest_five(conductor, config, tmp_path):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    result = a_run(conductor, config)
    assert result.code == 0, result.text
    assert subfolders(logs) == {p.name for p in newest_first[:5]}
    assert "warning" not in result.err, result.err
    assert "pruned 2 finished run-PID subfolder(s)" in (logs / "conductor.log").read_text()


def test_a_live_subfolder_among_the_old_ones_is_kept(conductor, config, tmp_path, hold):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    # The oldest of all by its marker, but a live run holds its lock right now.
    live = finished(logs, "run-100", time.time() - 7200)
    hold(live / LOCK_NAME)
    result = a_run(conductor, config)
    assert result.code == 0, result.text
    assert subfolders(logs) == {live.name, *(p.name for p in newest_first[:5])}
    assert (live / "svc0.log").read_text() == "a finished run's log\n"


def test_a_folder_conductor_did_not_make_is_never_pruned(conductor, config, tmp_path):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    old = time.time() - 7200
    user = logs / "run-9"  # made by hand: no marker
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    forged = logs / "run-8"  # a marker naming another folder (copied from elsewhere)
    forged.mkdir()
    (forged / MARK).write_text(json.dumps({"run_id": RUN_ID, "logs_dir": "/elsewhere/run-8"}))
    outside = tmp_path / "outside"  # a link to a folder whose marker names the link
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    marker = {"run_id": RUN_ID, "logs_dir": str(logs / "run-x"), "ended": old}
    (outside / MARK).write_text(json.dumps(marker))
    (logs / "run-x").symlink_to(outside, target_is_directory=True)
    (logs / "run-file").write_text("a file, not a folder")
    for path in (user, forged, outside, logs / "run-file"):
        os.utime(path, (old, old))
    result = a_run(conductor, config)
    assert result.code == 0, result.text
    expected = {"run-9", "run-8", "run-x", "run-file", *(p.name for p in newest_first[:5])}
    assert subfolders(logs) == expected
    assert (user / "notes.txt").read_text() == "mine"
    assert (logs / "run-x").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == [MARK, "precious.txt"]
    assert (logs / "run-file").read_text() == "a file, not a folder"


def test_a_run_that_went_to_a_subfolder_prunes_the_parent(conductor, config, tmp_path, hold):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    hold(logs / LOCK_NAME)  # another run holds the logs folder itself
    result = a_run(conductor, config, "--if-busy", "subfolder")
    assert result.code == 0, result.text
    mine = subfolders(logs) - {p.name for p in newest_first}
    assert len(mine) == 1, subfolders(logs)
    assert subfolders(logs) == {*mine, *(p.name for p in newest_first[:5])}
    own = logs / mine.pop()
    # The run's own subfolder is conductor's, stamped with its end, and holds no lock.
    mark = ownership.run_folder_mark(own)
    assert mark is not None
    assert mark.ended is not None
    assert mark.run_id == json.loads((own / "summary.json").read_text())["run_id"]
    assert not (own / LOCK_NAME).exists()


def test_a_run_pid_folder_a_user_made_is_used_but_never_marked(tmp_path):
    """A busy logs folder's `run-PID` that exists and is not conductor's stays not
    conductor's, so no later run prunes it."""
    logs = tmp_path / "logs"
    mine = logs / f"run-{os.getpid()}"
    mine.mkdir(parents=True)
    folder, made = runfolders.subfolder(logs)
    assert (folder, made) == (mine, False)
    runfolders.claim(folder, RUN_ID, made=made)
    assert not (mine / MARK).exists()
    shutil.rmtree(mine)
    folder, made = runfolders.subfolder(logs)
    runfolders.claim(folder, RUN_ID, made=made)
    assert ownership.run_folder_mark(folder) is not None


def test_a_folder_that_cannot_be_deleted_is_one_warning_and_the_run_goes_on(
    conductor, config, tmp_path
):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    stuck = newest_first[-1] / "stuck.log"
    stuck.write_text("immutable")
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        result = a_run(conductor, config)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert result.code == 0, result.text
    warnings = [line for line in result.err.splitlines() if "pruning" in line]
    assert len(warnings) == 1, result.err
    assert str(newest_first[-1]) in warnings[0]
    assert "Traceback" not in result.err
    assert newest_first[-2].name not in subfolders(logs)  # the other one still went


def test_an_old_subfolder_holding_a_mount_point_is_left_whole(conductor, config, tmp_path):
    """A folder mounted inside a run-PID subfolder (a bind mount of someone's files) is
    another filesystem's, not conductor's: the subfolder is left as it is, nothing
    under the mount is deleted, and the rest are pruned."""
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("not conductor's")
    inside = newest_first[-1] / "data"
    inside.mkdir()
    mount = subprocess.run(["mount", "--bind", str(victim), str(inside)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip("bind mounts are not available here (needs root)")
    try:
        result = a_run(conductor, config)
        assert (victim / "precious").read_text() == "not conductor's"
    finally:
        subprocess.run(["umount", str(inside)], check=True)
    assert result.code == 0, result.text
    warnings = [line for line in result.err.splitlines() if "pruning" in line]
    assert len(warnings) == 1, result.err
    assert f"{newest_first[-1]}: it holds the mount point {inside}" in warnings[0]
    assert (newest_first[-1] / "svc0.log").exists()  # left whole
    assert newest_first[-2].name not in subfolders(logs)  # the other one still went
    assert "Traceback" not in result.err


def test_a_lock_link_in_an_old_subfolder_is_left_and_its_target_untouched(
    conductor, config, tmp_path
):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    (newest_first[-1] / LOCK_NAME).symlink_to(victim)
    result = a_run(conductor, config)
    assert result.code == 0, result.text
    assert victim.read_text() == "root:x:0:0\n"
    assert (newest_first[-1] / LOCK_NAME).is_symlink()
    assert [line for line in result.err.splitlines() if "pruning" in line], result.err
    assert "Traceback" not in result.err


def test_two_runs_starting_at_once_prune_to_the_same_five(conductor, config, tmp_path):
    logs = tmp_path / "logs"
    newest_first = seven(logs)
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    go = tmp_path / "go"
    # Each COMMAND waits for the other's, so both runs are live at once.
    wait = (
        "import pathlib, sys, time; d = pathlib.Path(sys.argv[1]); "
        "(d / sys.argv[2]).write_text('x'); t = time.monotonic() + 30\n"
        "while len(list(d.glob('ran-*'))) < 2 and time.monotonic() < t: time.sleep(0.01)"
    )
    go.mkdir()
    args = ["run", "--config", "conductor.toml", "--if-busy", "subfolder", "--", PY, "-c", wait]
    procs = [conductor.start(*args, str(go), f"ran-{i}") for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert "pruning" not in err, err
    left = subfolders(logs) - {p.name for p in newest_first}
    assert len(left) == 1  # one run had the folder, the other a subfolder
    assert subfolders(logs) - left == {p.name for p in newest_first[:5]}
    assert not list(logs.rglob(LOCK_NAME))


# --- the lock file ---------------------------------------------------------------------


def test_no_lock_file_is_left_after_a_run(conductor, config, tmp_path):
    result = a_run(conductor, config)
    assert result.code == 0, result.text
    assert not (tmp_path / "logs" / LOCK_NAME).exists()
    # only conductor's mark stays: the folder is its own (rundir/folder_rules.py)
    assert list((tmp_path / "logs").glob(".conductor*")) == [tmp_path / "logs" / MARK_NAME]


def test_no_lock_file_is_left_after_up_or_clean(conductor, config, tmp_path, up):
    config({"web": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    up(tmp_path / "conductor.toml").stop()
    assert not (tmp_path / "logs" / LOCK_NAME).exists()
    (tmp_path / "logs" / LOCK_NAME).write_text("4242")  # a lock a killed run left
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert not (tmp_path / "logs" / LOCK_NAME).exists()


LOCKER = """
import sys
from pathlib import Path
from conductor.rundir.run_record import RunDir
run = RunDir(Path(sys.argv[1]))
run.lock()
print("locked", flush=True)
sys.stdin.readline()
run.release()
print("released", flush=True)
"""


def test_a_run_that_opened_the_lock_as_the_last_run_ended_gets_the_current_one(
    tmp_path, monkeypatch
):
    """The race of removing a lock file: B opens it, A (ending) unlinks it and lets go,
    B's flock then succeeds on a file that is no longer in the folder. B must find
    that out and lock the file the path names, or C would lock a new one beside it."""
    logs = tmp_path / "logs"
    a = subprocess.Popen(
        [PY, "-c", LOCKER, str(logs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert a.stdin is not None
    assert a.stdout is not None
    assert a.stdout.readline().strip() == "locked"
    real = lockfile.portable.try_lock
    opened: list[int] = []

    def a_ends_first(handle):  # B has opened the lock file, not yet flocked it
        if not opened:
            opened.append(os.fstat(handle.fileno()).st_ino)
            a.stdin.write("\n")
            a.stdin.flush()
            assert a.stdout.readline().strip() == "released"
            assert a.wait(timeout=10) == 0
            assert not (logs / LOCK_NAME).exists()  # A removed it, holding the lock
        return real(handle)

    monkeypatch.setattr(lockfile.portable, "try_lock", a_ends_first)
    b = RunDir(logs)
    assert b.lock()
    monkeypatch.setattr(lockfile.portable, "try_lock", real)
    try:
        assert os.fstat(b.lock_fd).st_ino == os.stat(logs / LOCK_NAME).st_ino
        assert (logs / LOCK_NAME).read_text() == str(os.getpid())
        with pytest.raises(LogsDirBusy):
            RunDir(logs).lock()  # C: the folder is B's
    finally:
        b.release()
    assert not (logs / LOCK_NAME).exists()
    a.stdin.close()
    a.stdout.close()


CONTENDER = """
import os, sys, time
from pathlib import Path
from conductor.errors import LogsDirBusy
from conductor.rundir.run_record import RunDir
logs, owner, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
me, done, overlaps = str(os.getpid()), 0, 0
deadline = time.monotonic() + 60
while done < rounds and time.monotonic() < deadline:
    run = RunDir(logs)
    try:
        run.lock()
    except LogsDirBusy:
        continue
    try:
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # only one at a time
    except FileExistsError:
        overlaps += 1
    else:
        os.close(fd)
        os.unlink(owner)
    run.release()
    done += 1
print(done, overlaps, flush=True)
"""


def test_runs_contending_for_the_lock_never_share_the_folder(tmp_path):
    """Many runs taking and releasing (so removing) the lock at once: whoever holds
    it is alone in the folder every time."""
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [PY, "-c", CONTENDER, str(logs), str(tmp_path / "owner"), "300"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=90)
        done, overlaps = map(int, out.split())
        assert (done, overlaps) == (300, 0)
    assert not (logs / LOCK_NAME).exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(
    conductor, config, tmp_path, kind
):
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = plant_link(logs / LOCK_NAME, kind, "root:x:0:0\n")
    result = a_run(conductor, config)
    assert result.code == 2, result.text
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert str(logs / LOCK_NAME) in lines[0], result.err
    assert victim.read_text() == "root:x:0:0\n"
    assert os.path.lexists(logs / LOCK_NAME)
    result = conductor.run("clean", "--config", "conductor.toml")
    assert "Traceback" not in result.err, result.text
    assert "its lock file" in result.err  # named: `clean` cannot examine that folder
    assert victim.read_text() == "root:x:0:0\n"
    assert os.path.lexists(logs / LOCK_NAME)


def test_a_fifo_as_lock_file_is_refused_without_hanging(conductor, config, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / LOCK_NAME)
    result = a_run(conductor, config)
    assert result.code == 2, result.text
    assert "not a plain file" in result.err
    assert stat.S_ISFIFO(os.lstat(logs / LOCK_NAME).st_mode)  # left as it was


def test_clean_never_follows_a_run_link_out_of_the_logs_folder(conductor, config, tmp_path):
    """`clean` walks the run-* subfolders: a link among them is not one."""
    logs = tmp_path / "logs"
    logs.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    record = {"run_id": RUN_ID, "processes": [], "folders": []}
    (outside / ".conductor-run.json").write_text(json.dumps(record))
    (logs / "run-x").symlink_to(outside, target_is_directory=True)
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert sorted(p.name for p in outside.iterdir()) == [".conductor-run.json"]


# --- the run record ------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["fifo", "link to a fifo"])
def test_a_run_record_that_is_no_plain_file_hangs_nothing(conductor, config, tmp_path, planted):
    """A FIFO where the run record goes hung `run` and `clean` in open(2) for good, deaf
    to SIGTERM; it is no run record: one warning, and the run goes on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    record = logs / ".conductor-run.json"

    def plant() -> None:
        if os.path.lexists(record):
            return
        if planted == "fifo":
            os.mkfifo(record)
        else:
            fifo = tmp_path / "fifo"
            if not fifo.exists():
                os.mkfifo(fifo)
            record.symlink_to(fifo)

    plant()
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass", timeout=60)
    assert result.code == 0, result.text
    assert f"{record} is not a conductor run record" in result.err
    plant()
    result = conductor.run("clean", "--config", "conductor.toml", timeout=30)
    assert result.code == 0, result.text
    plant()
    result = conductor.run(
        "run", "--config", "conductor.toml", "--attach=require", "--", PY, "-c", "pass",
        timeout=30,
    )  # fmt: skip
    assert result.code == 125, result.text
    assert "no live `conductor up`" in result.err
    assert "Traceback" not in result.err
