"""Readiness probes: each returns as soon as its service is ready and never blocks the loop.

They poll every few milliseconds (a refused connection on loopback costs microseconds),
so readiness is seen within 20 ms rather than at the next one-second tick. The caller
owns the deadline and races the probe against the process exiting.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from conductor.config.loading import ReadySpec
from conductor.files import logs, masking
from conductor.process import reaper

if TYPE_CHECKING:
    import aiohttp

POLL = 0.005
CMD_POLL = 0.02
_ATTEMPT_TIMEOUT = 2.0
BODY_LIMIT = 1 << 16  # how much of an HTTP body `ready.body` is matched against


def probe_host(host: str) -> str:
    """Where to knock: a wildcard or 'localhost' means IPv4 loopback, never a guess at ::1."""
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def describe(spec: ReadySpec, host: str, port: int | None) -> str:
    """The probe for people: conductor's words, with the configured data in them (a
    URL, a regex, a command's words) masked, for a readiness command may hold the
    password."""
    if spec.kind == "tcp":
        return f"tcp {probe_host(host)}:{port}"
    if spec.kind == "http":
        body = f" with a body matching {masking.mask(spec.body)!r}" if spec.body is not None else ""
        return f"http {masking.mask_url(http_url(spec, host, port))}{body}"
    if spec.kind == "log":
        return f"log line matching {masking.mask(str(spec.target))!r}"
    if spec.kind == "cmd" and isinstance(spec.target, tuple):
        return "command " + " ".join(masking.mask(word) for word in spec.target)
    return "started"


def http_url(spec: ReadySpec, host: str, port: int | None) -> str:
    target = str(spec.target or "/")
    if "://" in target:
        return target
    if not target.startswith("/"):
        target = "/" + target
    address = probe_host(host)
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{port}{target}"


async def wait_ready(
    spec: ReadySpec,
    *,
    host: str,
    port: int | None,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    log_from: int = 0,
) -> None:
    """Return once the service passes `spec`; loop until cancelled otherwise. A log
    probe reads from byte `log_from` on."""
    if spec.kind == "started":
        return
    if spec.kind == "tcp":
        assert port is not None
        await wait_tcp(probe_host(host), port)
    elif spec.kind == "http":
        await wait_http(http_url(spec, host, port), spec.status, spec.body)
    elif spec.kind == "log":
        await wait_log(log_path, str(spec.target), log_from)
    elif spec.kind == "cmd":
        assert isinstance(spec.target, tuple)
        await wait_cmd(spec.target, env, cwd)


async def tcp_accepts(host: str, port: int) -> bool:
    """One non-blocking connection attempt."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(_ATTEMPT_TIMEOUT):
                await loop.sock_connect(sock, (host, port))
        except (OSError, TimeoutError):
            return False
    return True


async def wait_tcp(host: str, port: int) -> None:
    while not await tcp_accepts(host, port):
        await asyncio.sleep(POLL)


def preload_http() -> None:
    """aiohttp takes ~0.3 s to import; do it while services start, not after a port opens."""
    import aiohttp  # noqa: F401


async def wait_http(url: str, status: tuple[int, ...] | None, body: str | None = None) -> None:
    """Return once `url` answers with an accepted status and, when `body` is given, a
    body (its first BODY_LIMIT bytes) that the regex finds."""
    # Knock with bare connection attempts until something listens: each costs
    # microseconds, where a failed aiohttp request costs about a millisecond of the CPU
    # the starting services need.
    address = urlsplit(url)
    if address.hostname and address.scheme in ("http", "https"):
        default = 443 if address.scheme == "https" else 80
        await wait_tcp(address.hostname, address.port or default)
    import aiohttp

    wanted = None if body is None else re.compile(body.encode())
    timeout = aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT)
    connector = aiohttp.TCPConnector(force_close=True, limit=1)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        while True:
            try:
                async with session.get(url, allow_redirects=False) as response:
                    ok = response.status in status if status else 200 <= response.status < 400
                    if ok and (wanted is None or wanted.search(await _head(response))):
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(POLL)


async def _head(response: aiohttp.ClientResponse) -> bytes:
    """At most BODY_LIMIT bytes of the body, within the attempt's own timeout: a server
    that streams forever costs the probe no more than that."""
    data = b""
    while len(data) < BODY_LIMIT:
        chunk = await response.content.read(BODY_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def wait_log(path: Path, pattern: str, start: int = 0) -> None:
    """Return at the first line from byte `start` on matching `pattern`
    (logs.first_match bounds each line)."""
    await logs.first_match(path, [re.compile(pattern.encode())], start=start)


async def wait_cmd(argv: tuple[str, ...], env: Mapping[str, str], cwd: Path) -> None:
    while True:
        proc = await reaper.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
        )
        try:
            async with asyncio.timeout(_ATTEMPT_TIMEOUT * 2):
                code = await proc.wait()
        except TimeoutError:
            code = None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if code == 0:
            return
        await asyncio.sleep(CMD_POLL)
