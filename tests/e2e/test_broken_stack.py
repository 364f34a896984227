"""A backend broken on purpose fails the run within seconds, named, with its log tail.

Uses the real [tool.conductor] definition of the backend, with only DATABASE_URL
pointed at a port where nothing listens (and no dependencies, so nothing else starts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def test_backend_with_a_bad_database_url_fails_fast_and_says_why(tmp_path: Path) -> None:
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["conductor"]["services"][
        "backend"
    ]
    backend["env"] = {**backend["env"], "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/genesis"}
    for key in ("REDIS_URL", "ORCHESTRATOR_URL"):
        backend["env"].pop(key)
    backend["depends_on"] = []
    lines = ["[services.backend]", *(f"{k} = {toml_value(v)}" for k, v in backend.items())]
    (tmp_path / "conductor.toml").write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "conductor",
            "run",
            "--config",
            "conductor.toml",
            "--auto-ports",
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 125, result.stderr
    assert elapsed < 20, f"took {elapsed:.1f}s to notice"
    assert "backend" in result.stderr
    assert "exited with status 1 before it was ready" in result.stderr
    assert "migrating the database failed" in result.stderr  # the log tail, shown
    assert "Traceback" not in result.stderr.split("log tail")[0]
