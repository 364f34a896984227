"""Issue 18, items 2 and 8 and the lock file: secrets at the cuts, conductor's own words
left whole, a service's control characters escaped, and a lock file parsed strictly.

Each test here failed on main before its fix (see the CHANGELOG)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import textwrap

import pytest

from conductor.files import logs, masking
from conductor.rundir import lockfile
from support import PY, needs_postgres

pytestmark = pytest.mark.conductor

PW = "Sup3rS3cretPw"  # unique to this file: hide() lasts for the process


def _pieces_of(secret: str) -> list[str]:
    """Every part of `secret` of five characters or more: none may be shown."""
    return [secret[i:j] for i in range(len(secret)) for j in range(i + 5, len(secret) + 1)]


def _assert_no_part(text: str, secret: str = PW) -> None:
    shown = [part for part in _pieces_of(secret) if part in text]
    assert not shown, f"parts of the secret shown: {shown[:3]}"


# The service prints the secret where each cut falls: the 64 KiB piece of --show-logs,
# the 1 KiB line cut of the failure tail, and the 8 KiB start of the tail's block.
LEAKY = textwrap.dedent(
    """
    import os, sys
    pw = os.environ["PW"].encode()
    out = sys.stdout.buffer
    out.write(b"x" * (65536 - 6) + pw + b" after\\n")
    end = [b"y" * (1024 - 6) + pw + b" end\\n"] + [b"f" * 299 + b"\\n"] * 20
    body = b"".join(end)
    # Everything after the block's first kept byte is 8192 bytes; it begins 6 bytes
    # into the secret.
    lead = pw[6:] + b"\\n"
    filler = 8192 - len(lead) - len(body)
    out.write(b"w" * 10 + pw + b"\\n" + b"g" * (filler - 1) + b"\\n" + body)
    out.flush()
    sys.exit(1)
    """
)


@needs_postgres
def test_no_cut_shows_part_of_a_secret(conductor, config, tmp_path):
    # Fails before the fix: `...Sup3rS` then `3cretPw` at the 64 KiB cut, `Sup3rS` at
    # the tail's line cut, `3cretPw` at the start of its block.
    config(
        {
            "db": {"kind": "postgres", "password": PW},
            "leaky": {
                "command": [PY, "-c", LEAKY],
                "depends_on": ["db"],
                "env": {"PW": "{services.db.password}"},
                "ready": {"log": "never printed"},
            },
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--show-logs", "--", "true")
    assert result.code == 125, result.text
    assert "leaky + " in result.err  # the 64 KiB line did come in pieces
    assert "tail cut at" in result.err  # and the tail was cut
    for text in (
        result.text,
        (tmp_path / "logs" / "conductor.log").read_text(),
        (tmp_path / "logs" / "report.html").read_text(),
        (tmp_path / "logs" / "summary.json").read_text(),
    ):
        _assert_no_part(text)
    assert "leaky + *** after" in result.err


def test_a_line_split_never_splits_a_secret():
    masking.hide(PW)
    for offset in range(-len(PW), 2):
        line = b"x" * (1024 + offset) + PW.encode() + b" tail" * 400
        splitter = logs.LineSplitter(window=1024)
        pieces = []
        for start in range(0, len(line), 700):  # as it arrives, in chunks
            pieces += splitter.feed(line[start : start + 700])
        pieces += splitter.feed(b"\n") + splitter.flush()
        assert b"".join(piece for piece, _ in pieces) == line  # every byte comes out
        for piece, _ in pieces:
            _assert_no_part(masking.mask_bytes(piece).decode())


def test_the_tail_start_never_splits_a_secret(tmp_path):
    masking.hide(PW)
    log = tmp_path / "svc.log"
    log.write_bytes(b"a\n" + b"w" * 50 + PW.encode() + b"z" * 200)
    for inside in range(1, len(PW)):  # the block's first byte is PW[inside]
        shown = logs.tail(log, max_bytes=len(PW) - inside + 200)
        assert shown.cut
        _assert_no_part("\n".join(shown.lines))


@needs_postgres
def test_a_password_that_is_a_keyword_masks_no_keyword(conductor, config, tmp_path, shared_cache):
    # Fails before the fix: `kind=***`, `url=***ql://***:***@`, cache paths masked.
    config({"db": {"kind": "postgres", "password": "postgres"}})
    check = conductor.run("check", "--config", "conductor.toml")
    assert check.code == 0, check.text
    assert "kind=postgres" in check.out
    assert re.search(r"url=postgresql://postgres:\*\*\*@127\.0\.0\.1:\d+/postgres ", check.out)
    result = conductor.run("run", "--config", "conductor.toml", "--", "sh", "-c", "echo $DB_URL")
    assert result.code == 0, result.text
    assert ":postgres@" in result.out  # COMMAND's own output is its own
    assert ":postgres@" not in result.err
    event_log = (tmp_path / "logs" / "conductor.log").read_text()
    assert f"{shared_cache}/conductor/postgres" in event_log
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["services"]["db"]["url"].startswith("postgresql://postgres:***@127.0.0.1:")


@needs_postgres
def test_a_password_that_is_markup_leaves_the_report_drawn(conductor, config, tmp_path):
    # Fails before the fix: every `<rect` became `<***` and the timeline drew nothing.
    config({"db": {"kind": "postgres", "password": "rect"}})
    result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 0, result.text
    page = (tmp_path / "logs" / "report.html").read_text()
    assert "<***" not in page
    assert len(re.findall(r'<rect class="phase ready"', page)) == 1
    assert '<g class="lane service clean" data-service="db">' in page


CONTROLS = "import sys; sys.stdout.write('A\\x1b[2JB\\x1b]0;pwned\\x07C\\x9bD\\n'); sys.exit(1)"


def test_control_characters_are_escaped_in_the_tail_and_report(conductor, config, tmp_path):
    # Fails before the fix: ESC, BEL and OSC reached the console tail and report.html raw.
    config({"noisy": {"command": [PY, "-c", CONTROLS], "ready": {"log": "never printed"}}})
    result = conductor.run("run", "--config", "conductor.toml", "--show-logs", "--", "true")
    assert result.code == 125, result.text
    tail_lines = [line for line in result.err.splitlines() if line.startswith("  noisy | ")]
    assert tail_lines == ["  noisy | A\\x1b[2JB\\x1b]0;pwned\\x07C\\x9bD"], result.err
    # --show-logs is the service's own bytes.
    assert "noisy | A\x1b[2JB\x1b]0;pwned\x07C\x9bD" in result.err.splitlines()
    page = (tmp_path / "logs" / "report.html").read_text()
    assert "A\\x1b[2JB\\x1b]0;pwned\\x07C\\x9bD" in page
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", page)


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"29170", "pid 29170"),
        (b"\x00\x00\x0029170\x00", "pid unknown"),
        (b"     29170", "pid unknown"),
        ("\u0661\u0662".encode(), "pid unknown"),
        (b"\x1b]0;pwned\x07", "pid unknown"),
    ],
)
def test_a_busy_lock_file_is_parsed_strictly(conductor, config, tmp_path, content, shown):
    # Fails before the fix: NUL bytes and padding reached stderr (`pid \0\0\029170`).
    config({"svc": {"command": [PY, "-c", "pass"]}})
    lock = tmp_path / "logs" / ".conductor.lock"
    lock.parent.mkdir()
    lock.write_bytes(content)
    holder = subprocess.Popen(
        [PY, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert result.code == 2, result.text
    assert f"another `conductor run` ({shown}" in result.err
    assert not re.search(r"[\x00-\x1f\x7f]", result.err.replace("\n", "")), repr(result.err)
    assert "  " not in result.err.split("is using")[0]


_HOLD = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1], 'rb+')\n"
    "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "print('locked', flush=True)\n"
    "time.sleep(60)\n"
)


def test_parse_pid_takes_only_what_conductor_writes():
    assert lockfile.parse_pid(str(os.getpid()).encode()) == os.getpid()
    for bad in (b"", b"0", b"-1", b"+1", b" 1", b"1 ", b"1\n", b"1\x00", b"\xd9\xa1", b"9" * 11):
        assert lockfile.parse_pid(bad) is None, bad


def test_holder_reports_the_strict_pid(tmp_path):
    lock = tmp_path / ".conductor.lock"
    lock.write_bytes(b"\x0012")
    with open(lock, "rb+") as held:  # flock: another open file of ours is another taker
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lockfile.holder(lock) is None
        lock.write_bytes(b"12")
        assert lockfile.holder(lock) == 12


def test_a_url_masks_its_password_and_keeps_its_words():
    masking.hide(PW)
    url = f"postgresql://{PW}:{PW}@127.0.0.1:5432/app?sslpassword={PW}#x"
    assert (
        masking.mask_url(url)
        == "postgresql://Sup3rS3cretPw:***@127.0.0.1:5432/app?sslpassword=***#x"
    )
    assert (
        masking.mask_url("redis://:pw-unknown@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    )
