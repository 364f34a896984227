"""files/safe_io.py, the one way conductor reads and writes its files in a logs folder that
others may write to: what it refuses, in-process and at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conductor.files import safe_io


def test_create_replaces_a_link_and_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "svc.log").symlink_to(victim)
    os.close(safe_io.create(tmp_path / "svc.log"))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "svc.log").is_symlink()


def test_create_refuses_a_folder_at_the_name(tmp_path: Path) -> None:
    (tmp_path / "conductor.log").mkdir()
    with pytest.raises(IsADirectoryError, match="Is a directory"):
        safe_io.create(tmp_path / "conductor.log")


def test_append_to_refuses_a_hard_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.link(victim, tmp_path / "conductor.log")
    with pytest.raises(OSError, match="not a plain file of its own"):
        safe_io.append_to(tmp_path / "conductor.log")
    assert victim.read_text() == "precious"


def test_append_to_appends_to_its_own_plain_file(tmp_path: Path) -> None:
    log = tmp_path / "conductor.log"
    log.write_text("one\n")
    fd = safe_io.append_to(log)
    os.write(fd, b"two\n")
    os.close(fd)
    assert log.read_text() == "one\ntwo\n"


def test_replace_is_owner_only_when_asked(tmp_path: Path) -> None:
    record = tmp_path / ".conductor-run.json"
    safe_io.replace(record, "{}", 0o600)
    assert record.stat().st_mode & 0o777 == 0o600
    assert record.read_text() == "{}"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.symlink_to(p.parent / "elsewhere"), "link"),
        (lambda p: os.mkfifo(p), "not a plain file"),
        (lambda p: p.write_bytes(b"x" * 11), "larger than 10 bytes"),
    ],
    ids=["link", "fifo", "too-large"],
)
def test_read_text_refuses_what_is_no_plain_small_file(tmp_path: Path, make, why) -> None:
    path = tmp_path / ".conductor-run.json"
    (tmp_path / "elsewhere").write_text("{}")
    make(path)
    with pytest.raises(safe_io.NotPlain, match=why):
        safe_io.read_text(path, limit=10)


def test_read_text_reads_a_small_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "record"
    path.write_text("{}")
    assert safe_io.read_text(path, limit=10) == "{}"
    with pytest.raises(FileNotFoundError):
        safe_io.read_text(tmp_path / "missing", limit=10)
