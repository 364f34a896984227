"""tools/container_stack.py: pyproject's Genesis stack with db and cache as containers,
everything else pyproject's own (issue 20, item 8)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conductor import load_config
from tools import container_stack

ROOT = Path(__file__).resolve().parents[2]


def test_the_variant_is_pyprojects_stack_with_db_and_cache_in_containers(tmp_path: Path) -> None:
    text = container_stack.variant("localhost/pg:1", "localhost/redis:1")
    ours = tomllib.loads(text)
    theirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["conductor"]
    assert set(ours["services"]) == set(theirs["services"])
    for name, service in theirs["services"].items():
        if name not in ("db", "cache"):
            assert ours["services"][name] == service, name
    assert {k: v for k, v in ours.items() if k != "services"} == {
        k: v for k, v in theirs.items() if k != "services"
    }
    # conductor itself takes it, the two as containers
    path = tmp_path / "conductor.toml"
    path.write_text(text)
    config = load_config(path)
    for name, image in (("db", "localhost/pg:1"), ("cache", "localhost/redis:1")):
        spec = config.services[name]
        assert spec.kind == "container"
        assert spec.image == image
    assert container_stack.PASSWORD not in " ".join(config.services["db"].command or [])


def test_a_pyproject_without_the_stack_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Malformed TOML, no [tool.conductor], services not a table, db or cache missing, an
    OUT that cannot be written: one line naming the file, what is wrong, what to do, and
    exit 2. Before: a traceback (TOMLDecodeError, KeyError, TypeError, FileNotFoundError)."""
    pyproject = tmp_path / "pyproject.toml"
    for text, said in (
        ("x = [\n", "is not valid TOML"),
        ('[project]\nname = "a"\n', "has no [tool.conductor] with services"),
        ("tool = 3\n", "has no [tool.conductor] with services"),
        ("[tool.conductor]\nservices = 3\n", "has no [tool.conductor] with services"),
        (
            '[tool.conductor.services.db]\nkind = "postgres"\n',
            "[tool.conductor] has no service cache",
        ),
    ):
        pyproject.write_text(text)
        with pytest.raises(container_stack.Unusable) as raised:
            container_stack.variant("pg", "redis", pyproject)
        assert str(raised.value).startswith(f"{pyproject}: {said}"), text
    result = subprocess.run(
        [sys.executable, "-m", "tools.container_stack", "pg", "redis", str(tmp_path / "no" / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"container_stack: {tmp_path / 'no' / 'x'}: cannot be written (No such file or directory)"
    ]
