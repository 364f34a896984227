"""The startup handshake with a cluster's server, over its Unix socket: proof that the
service's database opens, not only that the postmaster is up.

The postmaster logs "ready to accept connections" before any backend has read a
catalog. A cluster copied from the template cache whose files are damaged at their
listed size (a `global/pg_filenode.map` overwritten with zeros) gets that far and then
fails every connection, so readiness alone would hand COMMAND a broken database and
fail every run from that entry. A backend that answers ReadyForQuery has read its
database's relation map and catalog: that is the proof, and its refusal is what lets
the cache fall back to initdb.

Only protocol 3.0's startup message is spoken: no password (the socket is `trust` in
every cluster conductor makes) and no query; Terminate follows ReadyForQuery.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

PROTOCOL = 3 << 16  # 3.0
CANNOT_CONNECT_NOW = "57P03"  # starting up, in recovery, shutting down: ask again
POLL = 0.02  # between attempts while the server says it cannot take connections yet
_LONGEST = 1 << 20  # no startup message is anywhere near this: the peer is no server


class Refused(Exception):
    """The server refused the connection for good: its SQLSTATE and message."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{message} (SQLSTATE {code})")


def socket_path(folder: Path, port: int) -> Path:
    """Where the server listens in `folder` (its `-k`): libpq's own naming."""
    return folder / f".s.PGSQL.{port}"


async def prove(path: Path, user: str, database: str) -> bool:
    """Return once a backend for `user` on `database` answers ReadyForQuery: True. False
    when there is no socket at `path` (a `unix_socket_directories` setting put it
    elsewhere: nothing to prove through). Refused for any error but 57P03; that one,
    or a backend gone mid-way, is asked again. The caller holds the deadline."""
    while True:
        try:
            if await _attempt(path, user, database):
                return True
        except FileNotFoundError:
            return False
        except (OSError, asyncio.IncompleteReadError):
            pass  # not listening yet, or a backend that ended before it answered
        await asyncio.sleep(POLL)


async def _attempt(path: Path, user: str, database: str) -> bool:
    """One connection: True on ReadyForQuery (or a password asked for, which only a
    user's own pg_hba.conf can make it do: not ours to prove), False on 57P03."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(startup_message(user, database))
        await writer.drain()
        while True:
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            if not 4 <= length <= _LONGEST:
                raise Refused("08P01", f"the server's answer is malformed (length {length})")
            payload = await reader.readexactly(length - 4)
            if kind == b"E":
                code, message = error_fields(payload)
                if code == CANNOT_CONNECT_NOW:
                    return False
                raise Refused(code, message)
            if kind == b"R" and payload[:4] != bytes(4):
                return True
            if kind == b"Z":
                writer.write(b"X" + struct.pack("!i", 4))  # Terminate
                with contextlib.suppress(OSError):
                    await writer.drain()
                return True
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def startup_message(user: str, database: str) -> bytes:
    """StartupMessage: length, protocol, then NUL-ended name/value pairs and a NUL."""
    pairs = {"user": user, "database": database, "application_name": "conductor"}
    body = struct.pack("!i", PROTOCOL) + b"".join(
        name.encode() + b"\0" + value.encode() + b"\0" for name, value in pairs.items()
    )
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def error_fields(payload: bytes) -> tuple[str, str]:
    """(SQLSTATE, "SEVERITY:  message") of an ErrorResponse: one-letter fields, each
    NUL-ended, the list ended by a NUL."""
    fields: dict[str, str] = {}
    for field in payload.split(b"\0"):
        if field:
            fields[chr(field[0])] = field[1:].decode("utf-8", "replace")
    severity = fields.get("V") or fields.get("S") or "ERROR"
    return fields.get("C", "?????"), f"{severity}:  {fields.get('M', 'no message')}"
