"""Everything that differs between Linux/POSIX and Windows, kept in one small room.

Linux is what is tested here; the Windows branches follow what Windows offers instead
(CREATE_NEW_PROCESS_GROUP and CTRL_BREAK_EVENT for groups, psutil for trees, msvcrt for
the lock), so porting means reading only this file.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil
else:
    from conductor._lazy import psutil


WINDOWS = sys.platform == "win32"
_PR_SET_CHILD_SUBREAPER = 36


def new_group_kwargs() -> dict[str, Any]:
    """Popen arguments that put a child in a process group of its own."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined,unused-ignore]
    return {"start_new_session": True}


def child_group_kwargs() -> dict[str, Any]:
    """Popen arguments for a child that keeps our session (and so the terminal) but
    gets its own group, so signals can be aimed at its whole tree."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined,unused-ignore]
    return {"process_group": 0}


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a whole process group; False when the group is already gone."""
    try:
        if WINDOWS:
            win_sig = signal.CTRL_BREAK_EVENT if sig != signal.SIGKILL else signal.SIGTERM  # type: ignore[attr-defined,unused-ignore]
            os.kill(pgid, win_sig)
            if sig == signal.SIGKILL:
                kill_tree(pgid)
        else:
            os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process (not counting zombies) is still in the group."""
    if WINDOWS:
        return psutil.pid_exists(pgid)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return False


def pids_with_environ(entries: list[str]) -> list[int]:
    """Pids whose starting environment holds every `NAME=value` in `entries`.

    On Linux this reads /proc/PID/environ directly (what psutil's environ() reads),
    about four times quicker than building a psutil.Process per pid; teardown scans
    twice, so it shows in every run's exit time.
    """
    if sys.platform != "linux":
        wanted = dict(entry.split("=", 1) for entry in entries)
        found = []
        for proc in psutil.process_iter():
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            if all(env.get(k) == v for k, v in wanted.items()):
                found.append(proc.pid)
        return found
    needles = [b"\0" + entry.encode() + b"\0" for entry in entries]
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                data = b"\0" + handle.read()
        except OSError:  # gone, or another user's (psutil would say AccessDenied)
            continue
        if not data.endswith(b"\0"):
            data += b"\0"
        if all(needle in data for needle in needles):
            found.append(int(name))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant psutil can see."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch), as psutil's create_time() computes
    it; on Linux read from /proc directly, which is quicker than importing psutil."""
    if sys.platform == "linux":
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            ticks = int(stat.rsplit(")", 1)[1].split()[19])
            return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def become_subreaper() -> bool:
    """Make orphaned descendants (double-forked daemons) re-parent to us, so none escape."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap(pid: int) -> None:
    """Collect the exit status of an adopted orphan so it does not linger as a zombie."""
    if WINDOWS:
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on an open file without waiting; the OS drops it when the
    holder dies, even by SIGKILL, which is what makes a crashed run detectable."""
    if WINDOWS:
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def run_as_kwargs(user: str) -> dict[str, Any]:
    """Popen arguments to run a program as `user` (PostgreSQL refuses to run as root)."""
    if WINDOWS or os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
