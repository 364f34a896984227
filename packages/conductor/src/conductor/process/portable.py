"""Everything that differs between Linux/POSIX and Windows, kept in one small room.

Linux is what is tested here; the Windows branches follow what Windows offers instead
(CREATE_NEW_PROCESS_GROUP and CTRL_BREAK_EVENT for groups, psutil for trees, msvcrt for
the lock), so porting means reading only this file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from typing import IO, TYPE_CHECKING, Any

from conductor.process import procfs

if TYPE_CHECKING:
    import psutil
else:
    from conductor.process.lazy_psutil import psutil


WINDOWS = sys.platform == "win32"
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


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
    """Send `sig` to a whole process group; False when the group is already gone.
    Callers (kill.py) have proved the group is the one their process leads."""
    try:
        if WINDOWS:
            win_sig = signal.CTRL_BREAK_EVENT if sig != signal.SIGKILL else signal.SIGTERM  # type: ignore[attr-defined,unused-ignore]
            os.kill(pgid, win_sig)
            if sig == signal.SIGKILL:
                for proc in group_members(pgid):
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
        else:
            os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


def signal_process(pid: int, sig: int) -> bool:
    """Send `sig` to one process; False when it is gone."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes (not zombies) in the group, as handles that check their start
    time before a signal. On Windows, where groups are not kept, the leader's tree."""
    if WINDOWS:
        try:
            root = psutil.Process(pgid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    members = []
    for pid in procfs.group(pgid) if sys.platform == "linux" else _group_by_psutil(pgid):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except psutil.Error:
            continue
    return members


def _group_by_psutil(pgid: int) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process (not counting zombies) is still in the group."""
    return bool(group_members(pgid))


def leads_group(pid: int) -> bool:
    """Whether `pid` leads its own process group (what conductor gives every service)."""
    if WINDOWS:
        return True  # CREATE_NEW_PROCESS_GROUP: the group's id is its first process's pid
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def process_alive(pid: int, started: float | None, slack: float) -> bool:
    """Whether `pid` still names the process that started at `started` and has not yet
    exited (a zombie has)."""
    if sys.platform == "linux":
        found = procfs.stat(pid)
        if found is None or found.ended:
            return False
        return started is None or abs(found.started - started) <= slack
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) <= slack
    except psutil.Error:
        return False


def pids_with_environ(entries: list[str]) -> list[int]:
    """Pids whose starting environment holds every `NAME=value` in `entries`.

    On Linux this reads /proc/PID/environ (procfs; what psutil's environ() reads),
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
    for pid in procfs.pids():
        raw = procfs.environ(pid)
        if raw is None:  # gone, or another user's
            continue
        data = b"\0" + raw
        if not data.endswith(b"\0"):
            data += b"\0"
        if all(needle in data for needle in needles):
            found.append(pid)
    return found


def argv(pid: int) -> list[str]:
    """`pid`'s arguments, exactly; empty when it is gone or not this user's to read."""
    if sys.platform == "linux":
        return procfs.cmdline(pid)
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.Error:
        return []


def start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch), as psutil's create_time() computes
    it; on Linux read from /proc (procfs), which is quicker than importing psutil."""
    if sys.platform == "linux":
        return procfs.start_time(pid)
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def is_subreaper() -> bool:
    """Whether this process is a Linux child subreaper (PR_GET_CHILD_SUBREAPER)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
            return False
        return flag.value != 0
    except (OSError, AttributeError):
        return False


def set_subreaper(on: bool) -> bool:
    """Make orphaned descendants (double-forked daemons) re-parent to us, or stop it;
    True when the kernel did as asked. Only the CLI's own process does this."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def child_pids(pid: int) -> list[int]:
    """The pids of `pid`'s children (Linux reads /proc, with no psutil import)."""
    if sys.platform == "linux":
        found = procfs.children(pid)
        if found is not None:
            return found
        # no /proc/PID/task/*/children in this kernel: ask psutil
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


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
