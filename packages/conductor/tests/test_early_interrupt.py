"""Ctrl-C in the first half second, while `conductor` is still importing itself or
reading its arguments: exit 130 and one line, never a KeyboardInterrupt traceback
(issue 11). Nothing has been started yet, so there is nothing to stop.

The SIGINT is sent by the process to itself at an exact point (the import of asyncio,
or the parsing of the arguments), so the window is hit every time, not by luck."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from support import PY, default_sigint

# The `conductor` console script's own entry point, as installed: what the shell runs.
LAUNCH = textwrap.dedent(
    """
    import builtins, os, signal, sys
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="conductor")
    sys.argv = ["conductor", "check"]
    {arm}
    script.load()()
    """
)

# Ctrl-C the moment conductor's modules import asyncio (a fresh interpreter has not).
DURING_IMPORT = textwrap.dedent(
    """
    real_import = builtins.__import__
    def importing(name, *args, **kwargs):
        if name == "asyncio":
            builtins.__import__ = real_import
            os.kill(os.getpid(), signal.SIGINT)
        return real_import(name, *args, **kwargs)
    builtins.__import__ = importing
    """
)

# Ctrl-C once conductor is imported, while it reads its arguments.
DURING_ARGUMENTS = textwrap.dedent(
    """
    import argparse
    real_parse = argparse.ArgumentParser.parse_args
    def parsing(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_parse(self, *args, **kwargs)
    argparse.ArgumentParser.parse_args = parsing
    """
)


# Ctrl-C while the configuration is read (a slow .env, a big pyproject): the moment
# python-dotenv, which reads its env_file, is first imported; conductor's own modules
# are all loaded by then.
DURING_CONFIG = DURING_IMPORT.replace('name == "asyncio"', 'name.split(".")[0] == "dotenv"')


def launch(
    arm: str, argv: tuple[str, ...] = ("check",), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PY,
            "-c",
            LAUNCH.format(arm=arm).replace('["conductor", "check"]', repr(["conductor", *argv])),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
        preexec_fn=default_sigint,  # else, run in the background, it ignores SIGINT
    )


def test_ctrl_c_while_conductor_imports_itself() -> None:
    result = launch(DURING_IMPORT)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == "conductor: interrupted before anything was started\n"


def test_ctrl_c_while_conductor_reads_its_arguments() -> None:
    result = launch(DURING_ARGUMENTS)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == "conductor: interrupted before anything was started\n"


@pytest.mark.parametrize("action", ["check", "run", "up", "clean"])
def test_ctrl_c_while_conductor_reads_its_configuration(tmp_path: Path, action: str) -> None:
    """issue 18, item 4: one line and 130, not a traceback nor a silent exit."""
    (tmp_path / ".env").write_text("A=1\n")
    (tmp_path / "conductor.toml").write_text(
        'env_file = ".env"\n[services.a]\ncommand = ["sleep", "60"]\n'
    )
    argv = (action, *(["--", "true"] if action == "run" else []))
    result = launch(DURING_CONFIG, argv, cwd=tmp_path)
    assert result.returncode == 130, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"conductor: {action} interrupted (Ctrl-C)"), line
    assert not (tmp_path / "_e2e_logs").exists()  # nothing was started
