"""scripts/check_leftovers.py finds a process that outlived its conductor run."""

from __future__ import annotations

import json
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


def test_no_finished_run_is_an_error_not_a_pass(tmp_path: Path) -> None:
    result = check(tmp_path)
    assert result.returncode == 2
    assert "no finished conductor run" in result.stderr
