"""The files conductor writes in a logs folder. The run record of a `conductor up`
holds what `--attach` needs to render the stack's templates, a database password among
them: only its owner may read it. And a hostile logs folder may hold links (or hard
links) at the names conductor writes: conductor must never write through one into its
target, which may be any file the user (or root) can write."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conductor.rundir import folder_rules
from support import PY, Conductor, plant_link, write_config

SERVICE = {
    "command": [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"],
    "ready": {"log": "up"},
}


def test_the_run_record_is_readable_by_its_owner_only(conductor: Conductor, tmp_path: Path) -> None:
    write_config(tmp_path / "c.toml", {"svc": SERVICE}, logs_dir="logs")
    record = tmp_path / "logs" / ".conductor-run.json"
    # Seen while the run lives: the record goes when it ends.
    script = f"import os, stat; print(oct(stat.S_IMODE(os.stat({str(record)!r}).st_mode)))"
    result = conductor.run("run", "--config", "c.toml", "--", PY, "-c", script)
    assert result.code == 0, result.text
    assert result.out.strip() == "0o600"


@pytest.mark.parametrize(
    "name",
    [
        "svc.log",
        "conductor.log",
        "summary.json",
        "summary.json.tmp",
        "report.html",
        "report.html.tmp",
        ".conductor-run.json.tmp",
    ],
)
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_no_file_of_the_run_is_written_through_a_planted_link(
    conductor: Conductor, tmp_path: Path, name: str, link: str
) -> None:
    write_config(tmp_path / "c.toml", {"svc": SERVICE}, logs_dir="logs")
    logs = tmp_path / "logs"
    logs.mkdir()
    # conductor's own folder, where another process planted the link (in a folder that
    # is not conductor's, a file at one of its names stops the run: test_one_line.py)
    folder_rules.mark(logs)
    victim = plant_link(logs / name, link)
    result = conductor.run("run", "--config", "c.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    assert victim.read_text() == "precious\n"  # what plant_link wrote
    if name.endswith(".tmp"):  # not a name of conductor's: the link is left as it is
        assert (logs / name).is_symlink() or (logs / name).stat().st_nlink == 2
    else:  # the run's own file took its place
        assert (logs / name).is_file()
        assert not (logs / name).is_symlink()


def test_a_users_file_beside_a_name_of_conductors_is_left(
    conductor: Conductor, tmp_path: Path
) -> None:
    """A folder shared with the user's own files (`logs_dir = "."`): conductor writes
    its files whole by a temporary name first, and that name, too, is no user's file's
    (summary.json.tmp used to be unlinked and taken, in a folder that was not
    conductor's)."""
    names = ["summary.json.tmp", "report.html.tmp", ".conductor-run.json.tmp"]
    names.append(".conductor-logs.tmp")
    for name in names:
        (tmp_path / name).write_text("mine\n")
    write_config(tmp_path / "c.toml", {"svc": SERVICE}, logs_dir=".")
    result = conductor.run("run", "--config", "c.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    for name in names:
        assert (tmp_path / name).read_text() == "mine\n", name
    assert (tmp_path / "summary.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p.name not in names]


def test_appending_to_a_fifo_planted_as_conductor_log_fails_at_once(tmp_path: Path) -> None:
    """The watchdog appends to the run's conductor.log after conductor died; a FIFO
    planted there would block its open for as long as nobody reads it."""
    fifo = tmp_path / "conductor.log"
    os.mkfifo(fifo)
    code = (
        "import sys; from pathlib import Path; from conductor.files import safe_io\n"
        "try:\n    safe_io.append_to(Path(sys.argv[1]))\nexcept OSError:\n    print('refused')"
    )
    result = subprocess.run(
        [PY, "-c", code, str(fifo)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout.strip() == "refused", result.stderr
