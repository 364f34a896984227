"""Linux's /proc, read and parsed in this one module (a source scan in
tests/test_one_place.py fails if another opens a /proc path).

Each function reads what conductor asks of a process (its state, parent, group and
start time; its children; its environment; its open sockets; its command line) directly,
with no psutil import: that is quicker at every start and every teardown, and what
psutil itself would read. Linux only: portable.py chooses between these and psutil.
A process that is gone (or another user's, where the kernel says so) reads as None or
as nothing, never as an error: it may end at any moment between two reads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Start times come from clock ticks since boot, field 22 of /proc/PID/stat.
_STATE, _PPID, _PGRP, _START = 0, 1, 2, 19  # fields after the command's closing ')'


@dataclass(frozen=True)
class Stat:
    """What /proc/PID/stat says of a process that conductor uses."""

    state: str  # R, S, D, Z (zombie), X (dead), ...
    ppid: int
    pgrp: int
    start_ticks: int  # clock ticks since boot

    @property
    def ended(self) -> bool:
        """It has exited (a zombie, waiting to be waited for, has)."""
        return self.state in ("Z", "X")

    @property
    def started(self) -> float:
        """When it started, in seconds since the epoch (as psutil's create_time())."""
        return boot_time() + self.start_ticks / os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> Stat | None:
    """`pid`'s /proc/PID/stat; None when it is gone. The command name may hold spaces
    and parentheses, so fields count from its last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return Stat(
            fields[_STATE].decode(), int(fields[_PPID]), int(fields[_PGRP]), int(fields[_START])
        )
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch); None when it is gone."""
    found = stat(pid)
    return None if found is None else found.started


@functools.cache
def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def pids() -> Iterator[int]:
    """Every pid this user can see, as /proc lists them."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def children(pid: int) -> list[int] | None:
    """`pid`'s children, from each of its threads' `children` list (an orphan is handed
    to any thread of its subreaper). None where there is no such list: a kernel without
    it, or a `pid` that is gone (children_by_scan then tells); what was read so far when
    a list cannot be read otherwise."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found += [int(word) for word in handle.read().split()]
    except FileNotFoundError:
        return None
    except OSError:
        return found
    return found


def children_by_scan(pid: int) -> list[int]:
    """`pid`'s children by each process's parent: a scan of all of /proc, slower."""
    return [p for p in pids() if (found := stat(p)) is not None and found.ppid == pid]


def group(pgid: int) -> list[int]:
    """The processes of a process group, by one getpgid() per process: no file read."""
    members = []
    for pid in pids():
        try:
            if os.getpgid(pid) == pgid:
                members.append(pid)
        except OSError:
            continue
    return members


def environ(pid: int) -> bytes | None:
    """`pid`'s starting environment, NUL-separated as the kernel keeps it; None when it
    is gone, or another user's (psutil would say AccessDenied)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def fd_stat(pid: int, fd: int) -> os.stat_result | None:
    """What `pid`'s descriptor `fd` is open on (the file itself, wherever it has been
    moved since); None when it is gone, closed, or another user's."""
    try:
        return os.stat(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def fd_links(pid: int) -> Iterator[str]:
    """Where each open descriptor of `pid` leads (`socket:[INODE]` for a socket);
    nothing when it is gone or another user's."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in fds:
        try:
            yield os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue


def cmdline(pid: int) -> list[str]:
    """`pid`'s arguments as it was started with them (NUL-separated in /proc); empty
    when it is gone (or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return raw.decode("utf-8", "replace").split("\0")[:-1] if raw else []


def tcp_table(name: str) -> list[str] | None:
    """The rows of /proc/net/`name` (tcp or tcp6), heading left out; None when the
    table is not there (no IPv6). OSError when it cannot be read."""
    try:
        with open(f"/proc/net/{name}", encoding="ascii") as handle:
            return handle.read().splitlines()[1:]
    except FileNotFoundError:
        return None
