"""Service logs under stress: a huge line must not stretch a deadline, hide a later
line, flood the console through the failure tail, or keep Ctrl-C waiting."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conductor.files import logs
from conductor.service import ECHO_DRAIN
from support import PY, fake, wait_for

pytestmark = pytest.mark.conductor

MiB = 1 << 20


def test_ready_timeout_fires_on_time_while_the_log_probe_reads_a_huge_line(
    conductor, config, tmp_path
):
    # Before the fix the probe re-split the whole unfinished line for every 64 KiB it
    # read, without ever yielding to the loop: ready_timeout = 3 took minutes.
    config(
        {
            "svc": {
                "command": fake("longline", "--mb", "100", "--text", ""),
                "ready": {"log": "READY"},
                "ready_timeout": 3,
            }
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass", timeout=90)
    assert result.code == 125, result.text[-2000:]
    assert "service 'svc' was not ready after 3s" in result.err
    assert result.seconds < 10, result.seconds
    assert len(result.err) < 20_000  # the failure tail is capped too


def test_log_probe_matches_a_line_that_follows_a_huge_line(conductor, config, tmp_path):
    config(
        {
            "svc": {
                "command": fake("longline", "--mb", "100", "--text", "READY to serve"),
                "ready": {"log": "^READY to serve$"},
                "ready_timeout": 60,
            }
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass", timeout=90)
    assert result.code == 0, result.text[-2000:]
    assert result.seconds < 15, result.seconds


def test_ctrl_c_acts_at_once_while_show_logs_streams_a_huge_line(conductor, config, tmp_path):
    # 400 MiB of one line at 200 MiB/s: the flood is still going when Ctrl-C comes.
    config(
        {
            "svc": {
                "command": fake("longline", "--mb", "400", "--rate", "200", "--text", ""),
                "ready": {"log": "READY"},
                "ready_timeout": 60,
            }
        }
    )
    proc = conductor.start("run", "--config", "conductor.toml", "--show-logs", "--", PY, "-c", "")
    log = tmp_path / "logs" / "svc.log"
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 20 * MiB, what="the flood")
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert took < 10, took
    assert "svc | fake longline pid" in err
    assert "svc + xxxx" in err  # the long line is shown in pieces


def test_show_logs_shows_every_byte_of_a_long_line(conductor, config, tmp_path):
    config(
        {
            "svc": {
                "command": fake("longline", "--mb", "3", "--text", "READY to serve"),
                "ready": {"log": "^READY"},
            }
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--show-logs", "--", PY, "-c", "")
    assert result.code == 0, result.text[-2000:]
    shown = [line for line in result.err.splitlines() if line.startswith(("svc | ", "svc + "))]
    rebuilt: list[str] = []
    for line in shown:
        if line.startswith("svc | "):
            rebuilt.append(line[6:])
        else:
            rebuilt[-1] += line[6:]
    expected = (tmp_path / "logs" / "svc.log").read_text().splitlines()
    assert rebuilt == expected
    assert any(line == "x" * (3 * MiB) for line in rebuilt)


def test_failure_tail_is_capped_in_bytes_and_says_so(conductor, config, tmp_path):
    config(
        {"svc": {"command": fake("crash-longline", "--mb", "10", "--code", "3"), "port": "auto"}}
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text[-2000:]
    assert "service 'svc' exited with status 3 before it was ready" in result.err
    log = tmp_path / "logs" / "svc.log"
    assert f"(tail cut at 8 KiB, 1 KiB a line; whole log: {log})" in result.err
    assert len(result.err.encode()) < 16 * 1024
    assert (tmp_path / "logs" / "conductor.log").stat().st_size < 16 * 1024


SLOW_CONSOLE = """
import asyncio, sys, time
from conductor import Stack, load_config
from conductor.report.console import Reporter

class SlowConsole:  # 10 ms a write: --show-logs falls far behind a flooding service
    def __init__(self):
        self.text = []
    def write(self, text):
        time.sleep(0.01)
        self.text.append(text)
    def flush(self):
        pass
    def isatty(self):
        return False

async def main():
    console = SlowConsole()
    async with Stack(load_config(sys.argv[1]), show_logs=True, reporter=Reporter(console)):
        ended = time.monotonic()
    print(time.monotonic() - ended)
    print("".join(console.text)[-1000:])

asyncio.run(main())
"""


def test_show_logs_stops_soon_after_teardown_however_far_behind(conductor, config, tmp_path):
    config(
        {
            "svc": {
                "command": fake("flood", "--port", "{port}", "--mb", "80"),
                "port": "auto",
                "ready_timeout": 60,
            }
        }
    )
    proc = subprocess.run(
        [PY, "-c", SLOW_CONSOLE, str(tmp_path / "conductor.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=conductor.env,
    )
    assert proc.returncode == 0, proc.stderr
    teardown, shown = proc.stdout.split("\n", 1)
    assert float(teardown) < ECHO_DRAIN + 3, teardown
    log = tmp_path / "logs" / "svc.log"
    notice = f"svc: --show-logs stops here, {ECHO_DRAIN:g}s after teardown; the whole log is {log}"
    assert notice in shown


# The reader itself, in process ------------------------------------------------------


def _pieces(path: Path, window: int) -> list[tuple[bytes, bool]]:
    async def collect() -> list[tuple[bytes, bool]]:
        follow = logs.follow(path, stop=lambda: True, window=window)
        return [piece async for batch in follow for piece in batch]

    return asyncio.run(collect())


def test_follow_cuts_long_lines_into_pieces_and_loses_no_byte(tmp_path):
    path = tmp_path / "svc.log"
    data = b"short\n" + b"a" * 200_000 + b"\n\nmiddle\n" + b"b" * 70_000 + b"\nend"
    path.write_bytes(data)
    pieces = _pieces(path, window=1000)
    assert all(len(piece) <= 1000 for piece, _ in pieces)
    lines: list[bytes] = []
    for piece, starts_line in pieces:
        if starts_line:
            lines.append(piece)
        else:
            lines[-1] += piece
    assert lines == data.split(b"\n")
    firsts = [piece for piece, starts_line in pieces if starts_line]
    assert firsts == [b"short", b"a" * 1000, b"", b"middle", b"b" * 1000, b"end"]


@pytest.mark.parametrize("window", [8, 1000, logs.LINE_WINDOW])
def test_line_splitter_gives_back_every_line_however_the_stream_is_cut(window):
    rng = random.Random(window)
    words = [b"", b"a", b"\n", "é".encode(), "€".encode(), b"x" * 300, b"y" * (3 * window + 5)]
    data = b"".join(rng.choice(words) for _ in range(400))
    splitter = logs.LineSplitter(window)
    pieces: list[tuple[bytes, bool]] = []
    at = 0
    while at < len(data):
        size = rng.choice([1, 7, 4096, 1 << 16, 1 << 17])
        pieces += splitter.feed(data[at : at + size])
        at += size
    pieces += splitter.flush()
    assert all(len(piece) <= window for piece, _ in pieces)
    lines: list[bytearray] = []
    for piece, starts_line in pieces:
        if starts_line:
            lines.append(bytearray())
        lines[-1] += piece
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it starts no other
    assert lines == expected
    # Pieces are cut between characters: each decodes on its own.
    assert "".join(piece.decode() for piece, _ in pieces) == data.decode().replace("\n", "")


def test_tail_of_an_ordinary_log_is_its_last_lines_uncut(tmp_path):
    path = tmp_path / "svc.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    got = logs.tail(path, 30)
    assert got.lines == [f"line {i}" for i in range(70, 100)]
    assert not got.cut


def test_tail_is_capped_per_line_and_in_total(tmp_path):
    path = tmp_path / "svc.log"
    path.write_bytes(b"first\n" + "é".encode() * 3_000_000 + b"\nlast\n")
    got = logs.tail(path, 30, max_bytes=8192, line_bytes=1024)
    assert got.cut
    assert got.lines[-1] == "last"
    assert sum(len(line.encode()) for line in got.lines) <= 8192
    assert all(len(line.encode()) <= 1024 + 8 for line in got.lines)
    assert "\ufffd" not in "".join(got.lines)  # cut between characters, never inside one
    assert logs.tail(tmp_path / "missing.log").lines == []


def test_conductor_log_names_command_on_one_line_whatever_its_words_hold(
    conductor, config, tmp_path
):
    """COMMAND's words with a newline, an escape and a space in them: conductor.log's
    "running" line stays one line, and the words are shown as a shell would take them.
    Before: `" ".join` wrote the script's newlines into the log, one event over 3 lines."""
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    script = "import sys\nprint('two words', '\x1b[2J')"
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", script)
    assert result.code == 0, result.text
    log = (tmp_path / "logs" / "conductor.log").read_text()
    (line,) = [line for line in log.splitlines() if "all services ready; running" in line]
    assert "\x1b" not in line
    assert line.endswith(r"""-c 'import sys\nprint('"'"'two words'"'"', '"'"'\x1b[2J'"'"')'"""), (
        line
    )
