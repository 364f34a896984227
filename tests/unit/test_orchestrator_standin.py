"""The orchestrator stand-in stops on SIGTERM as the stack's other services do."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "orchestrator_standin.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def standin() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        # Ready when it says where it listens (it binds before printing).
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"127.0.0.1:{port}".encode() in line, line
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, bytes, float]:
    assert proc.stdout is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output = await asyncio.wait_for(proc.stdout.read(), 30)
    status = await asyncio.wait_for(proc.wait(), 30)
    return status, output, time.monotonic() - started


async def test_sigterm_ends_it_by_that_signal(
    standin: tuple[asyncio.subprocess.Process, str],
) -> None:
    """Like Uvicorn and Vite: exit status 143 (-15 here), not 1 and not 0."""
    proc, _ = standin
    status, output, _ = await stop(proc)
    assert status == -signal.SIGTERM, output
    assert b"Traceback" not in output


async def test_a_slow_answer_in_flight_does_not_hold_up_or_break_the_stop(
    standin: tuple[asyncio.subprocess.Process, str],
) -> None:
    """The E2E suite leaves a 30 s answer pending; stopping used to wait out aiohttp's
    shutdown timeout, then cancel it into a traceback and exit status 1."""
    proc, url = standin
    async with aiohttp.ClientSession(trust_env=False) as http:
        async with http.post(f"{url}/control", json={"mode": "slow", "delay": 30}) as r:
            assert r.status == 200
        pending = asyncio.create_task(
            http.post(f"{url}/v1/answers", json={"business": {"name": "x"}, "question": "q"})
        )
        deadline = time.monotonic() + 30
        while True:  # until the stand-in has the question
            async with http.get(f"{url}/stats") as r:
                if (await r.json())["asked"] == 1:
                    break
            assert time.monotonic() < deadline, "the question never arrived"
            await asyncio.sleep(0.01)
        status, output, took = await stop(proc)
        async with await pending as answer:
            assert answer.status == 503
    assert status == -signal.SIGTERM, output
    assert b"Traceback" not in output
    assert took < 1.0, f"took {took:.2f}s to stop"
