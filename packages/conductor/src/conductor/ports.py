"""Free ports for "auto", and finding out who holds a taken one."""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import TYPE_CHECKING

from conductor.probes import probe_host

if TYPE_CHECKING:
    import psutil
else:
    from conductor.process.lazy_psutil import psutil


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct free ports, all held until the last is found so none repeats."""
    address = probe_host(host)
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(_family(address), socket.SOCK_STREAM))
            sock.bind((address, 0))
            ports.append(sock.getsockname()[1])
        return ports


def bind_error(host: str) -> OSError | None:
    """Why a server could not listen on `host` at all, or None when it can: an address
    this machine does not have (EADDRNOTAVAIL), or a name that does not resolve.
    Binding to port 0 sends nothing anywhere."""
    try:
        found = socket.getaddrinfo(
            host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:  # socket.gaierror
        return exc
    except (UnicodeError, ValueError):  # the idna codec: an empty label, one too long
        return OSError(errno.EINVAL, "not a host name the resolver can encode")
    error: OSError | None = None
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.bind(address)
        except OSError as exc:
            error = error or exc
            continue
        return None
    return error


def is_taken(host: str, port: int) -> bool:
    """Whether a server could not bind host:port now (as servers do, with SO_REUSEADDR)."""
    address = probe_host(host)
    with socket.socket(_family(address), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def holder(port: int) -> str | None:
    """'pid N (name)' of the process listening on `port`, when the OS tells us."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return None
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None
