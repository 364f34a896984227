"""scripts/check_leftovers.py finds a process that outlived its conductor run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_leftovers.py"


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), "--since", str(time.time() - 60)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_survivor_carrying_the_run_marker_is_named(tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": run_id}))
    survivor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"CONDUCTOR_RUN_ID": run_id, "PATH": "/usr/bin:/bin"},
    )
    try:
        result = check(tmp_path)
        assert result.returncode == 1
        assert f"pid {survivor.pid}" in result.stderr
    finally:
        survivor.kill()
        survivor.wait()
    assert check(tmp_path).returncode == 0


def test_a_run_that_started_nothing_adds_no_message(tmp_path: Path) -> None:
    """A typo in [tool.conductor]: conductor said why and started nothing; the check
    adds no second, unrelated-looking failure."""
    result = check(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def sleeper(run_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"CONDUCTOR_RUN_ID": run_id, "PATH": "/usr/bin:/bin"},
    )


def dead_pid() -> int:
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


def test_a_run_killed_before_its_summary_is_checked_by_its_record(tmp_path: Path) -> None:
    """conductor killed with SIGKILL writes no summary.json; its record names the run."""
    run_id = uuid.uuid4().hex
    run_dir = tmp_path / "run-4242"
    run_dir.mkdir()
    record = {"conductor_pid": dead_pid(), "run_id": run_id, "started": time.time() - 60}
    (run_dir / ".conductor-run.json").write_text(json.dumps(record))
    survivor = sleeper(run_id)
    try:
        result = check(tmp_path)
        assert result.returncode == 1, result.stderr
        assert f"pid {survivor.pid}" in result.stderr
    finally:
        survivor.kill()
        survivor.wait()


def test_the_record_of_a_live_run_is_not_a_leftover(tmp_path: Path) -> None:
    """Another run still going in a run-PID subfolder: its services are its own."""
    run_id = uuid.uuid4().hex
    record = {"conductor_pid": os.getpid(), "run_id": run_id, "started": time.time()}
    (tmp_path / ".conductor-run.json").write_text(json.dumps(record))
    service = sleeper(run_id)
    try:
        result = check(tmp_path)
        assert (result.returncode, result.stderr) == (0, "")
    finally:
        service.kill()
        service.wait()


def test_a_container_carrying_the_run_label_is_named(tmp_path: Path) -> None:
    """A container of the run's (by its label, as the engine lists it) is a leftover too:
    here an engine on PATH that lists one for this run's label filter, and none for any
    other."""
    run_id = uuid.uuid4().hex
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "summary.json").write_text(json.dumps({"run_id": run_id}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "podman"
    engine.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "ps --all --quiet --filter label=conductor.run-id={run_id}" ] && echo 0a1b2c\n'
        "exit 0\n"
    )
    engine.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(logs), "--since", str(time.time() - 60)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    assert f"podman container 0a1b2c (run {run_id})" in result.stderr


def test_an_engine_that_hangs_fails_the_check_once_not_per_run(tmp_path: Path) -> None:
    """An engine that does not answer `ps` cannot say the runs left no container: named,
    exit 1, and asked nothing more. Before: each of the runs waited out the deadline (60 s
    apiece), then 'leftovers: none', exit 0."""
    logs = tmp_path / "logs"
    for name in ("run-1", "run-2", "run-3"):
        (logs / name).mkdir(parents=True)
        (logs / name / "summary.json").write_text(json.dumps({"run_id": uuid.uuid4().hex}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "podman"
    engine.write_text("#!/bin/sh\nexec sleep 30\n")
    engine.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(logs), "--since", "0", "--engine-seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert time.monotonic() - began < 10
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("podman did not answer `ps` in 1 s") == 1, result.stderr
