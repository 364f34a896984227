"""Whose server answers on a port: the listening sockets a connection to host:port
reaches, and the processes that hold them (Linux).

A fixed port can be free when the plan is made and taken by another program before the
service binds it. The probe then gets its answer from that program, so a probe's success
alone proves nothing. The proof is the socket itself: each listening socket has an inode,
and a process holds it as a `socket:[INODE]` link in /proc/PID/fd.

The kernel lists listening sockets through sock_diag netlink in a fraction of a
millisecond. /proc/net/tcp walks the whole connection table and takes milliseconds. It is
read only where netlink is refused, as in some sandboxes.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from conductor.process import procfs

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_DIAG_TIMEOUT = 1.0


@dataclass(frozen=True)
class Socket:
    """One listening TCP socket: its family, bound address (packed) and inode."""

    family: int
    address: bytes
    port: int
    inode: int


@dataclass(frozen=True)
class Listener:
    """Who answers on host:port. `holders` names the other processes, when foreign."""

    state: Literal["ours", "foreign", "nobody", "unknown"]
    holders: tuple[str, ...] = ()


def listening(port: int) -> list[Socket] | None:
    """Every listening TCP socket on `port`; None where the OS does not tell (not Linux)."""
    if sys.platform != "linux":
        return None
    try:
        found = [s for family in (socket.AF_INET, socket.AF_INET6) for s in _diag(family)]
    except OSError:
        try:
            found = _proc_net()
        except OSError:
            return None
    return [s for s in found if s.port == port]


def _diag(family: int) -> list[Socket]:
    """Listening sockets of one family, from the kernel's sock_diag netlink interface."""
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN) + bytes(48)
    header = _HEADER.pack(
        _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
    )
    size = 4 if family == socket.AF_INET else 16
    found: list[Socket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(_DIAG_TIMEOUT)
        sock.send(header + request)
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return found
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if kind == _NLMSG_DONE or length < _HEADER.size:
                    return found
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    raise OSError(code, os.strerror(code) if code else "netlink error")
                # inet_diag_msg: family, state, timer, retrans; then sockid (sport and
                # dport big-endian, src, dst, interface, cookie); expires, queues, uid, inode
                body = offset + _HEADER.size
                port = struct.unpack_from("!H", data, body + 4)[0]
                inode = struct.unpack_from("=I", data, body + 68)[0]
                found.append(Socket(family, data[body + 8 : body + 8 + size], port, inode))
                offset += (length + 3) & ~3


def _proc_net() -> list[Socket]:
    """The same from /proc/net/tcp and tcp6: slower, for kernels that refuse netlink."""
    found: list[Socket] = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        lines = procfs.tcp_table(name)
        if lines is None:  # no IPv6
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, port = fields[1].partition(":")
            raw = bytes.fromhex(address)
            if sys.byteorder == "little":  # each 32-bit word is in host order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(Socket(family, raw, int(port, 16), int(fields[9])))
    return found


def reached(sockets: Iterable[Socket], host: str) -> set[int]:
    """Inodes of the sockets a connection to `host` (an address) is delivered to: one
    bound to that very address wins over a wildcard, IPv4's wildcard over IPv6's."""
    target = _packed(host)
    if target is None:  # a name, not an address: every listener on the port counts
        return {s.inode for s in sockets}
    tiers: dict[int, set[int]] = {}
    for s in sockets:
        tier = _tier(s, target)
        if tier is not None:
            tiers.setdefault(tier, set()).add(s.inode)
    return tiers[min(tiers)] if tiers else set()


def _packed(host: str) -> tuple[int, bytes] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return family, socket.inet_pton(family, host)
        except OSError:
            continue
    return None


def _tier(s: Socket, target: tuple[int, bytes]) -> int | None:
    family, address = target
    mapped = b"\0" * 10 + b"\xff\xff" + address  # ::ffff:a.b.c.d
    if s.family == family and s.address == address:
        return 0
    if family == socket.AF_INET and s.family == socket.AF_INET6 and s.address == mapped:
        return 0
    if s.family == family and not any(s.address):
        return 1
    if family == socket.AF_INET and s.family == socket.AF_INET6 and not any(s.address):
        return 2  # a dual-stack IPv6 wildcard takes IPv4 too, after IPv4's own
    return None


def held(inodes: set[int], pids: Iterable[int]) -> set[int]:
    """Which of `inodes` these processes hold open (unreadable processes are skipped)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    found: set[int] = set()
    for pid in pids:
        for link in procfs.fd_links(pid):  # nothing when gone, or another user's
            if link in wanted:
                found.add(wanted[link])
                if len(found) == len(wanted):
                    return found
    return found


def holders(inodes: set[int]) -> list[int]:
    """Every process this user can see that holds one of `inodes` (a scan of /proc)."""
    return [pid for pid in procfs.pids() if held(inodes, [pid])]


def describe(pid: int) -> str:
    """'pid N (command line)', as far as /proc shows it."""
    # one line, whatever the arguments hold (a newline in one among them)
    command = " ".join(" ".join(procfs.cmdline(pid)).split())[:120]
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def whose(host: str, port: int, leader: int, marked: Callable[[], Iterable[int]]) -> Listener:
    """Whether the server a connection to host:port reaches belongs to the service whose
    process group `leader` leads, or to `marked()` (its descendants that left the group).

    The leader is looked at first, as it usually holds the socket itself; the group and
    the marked processes only when it does not.
    """
    sockets = listening(port)
    if sockets is None:
        return Listener("unknown")
    inodes = reached(sockets, host)
    if not inodes:
        return Listener("nobody")
    foreign = set(inodes)
    for batch in (lambda: [leader], lambda: procfs.group(leader), marked):
        foreign -= held(foreign, batch())
        if not foreign:
            return Listener("ours")
    seen = tuple(describe(pid) for pid in holders(foreign))
    if not seen and not foreign & reached(listening(port) or [], host):
        # Closed between the two looks: what is left is ours, or nothing.
        return Listener("ours" if inodes - foreign else "nobody")
    return Listener("foreign", seen)
