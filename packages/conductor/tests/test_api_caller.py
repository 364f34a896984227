"""A Python caller of conductor keeps what is its own: `run_command` never kills the
caller's other children, never leaves the caller a child subreaper, and refuses a
timeout that is not a positive finite number (0 used to mean "no limit", NaN "none").

Found by calling run_command from a program with a child of its own (issue 11, known
defects 1 and 6)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conductor import run_command
from conductor.errors import ConductorError
from support import Conductor, write_config

pytestmark = pytest.mark.conductor

CALLER = """
import ctypes, os, subprocess, sys
from conductor import run_command
child = subprocess.Popen(["sleep", "60"], env={**os.environ})
status = run_command(["true"], config="c.toml")
flag = ctypes.c_int()
ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
alive = child.poll() is None
child.kill()
child.wait()
print(status, alive, flag.value)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="child subreaper is Linux's")
def test_run_command_leaves_the_callers_child_alone(conductor: Conductor, tmp_path: Path) -> None:
    write_config(tmp_path / "c.toml", {"a": {"command": ["sleep", "30"]}}, logs_dir="logs")
    result = subprocess.run(
        [sys.executable, "-c", CALLER],
        cwd=tmp_path,
        env=conductor.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    status, child_alive, subreaper = result.stdout.split()
    assert status == "0", result.stderr
    assert child_alive == "True", "run_command killed its caller's own child"
    assert subreaper == "0", "run_command left its caller a child subreaper"


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_run_command_refuses_a_timeout_that_is_no_deadline(tmp_path: Path, timeout: float) -> None:
    write_config(tmp_path / "c.toml", {"a": {"command": ["sleep", "30"]}}, logs_dir="logs")
    with pytest.raises(ConductorError, match="timeout"):
        run_command(["true"], config=tmp_path / "c.toml", timeout=timeout)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-0"])
def test_cli_timeout_must_be_positive_and_finite(
    conductor: Conductor, tmp_path: Path, timeout: str
) -> None:
    write_config(tmp_path / "c.toml", {"a": {"command": ["sleep", "30"]}}, logs_dir="logs")
    result = conductor.run("run", "--config", "c.toml", "--timeout", timeout, "--", "true")
    assert result.code == 2, result.text
    assert len(result.err.strip().splitlines()) == 1, result.err
