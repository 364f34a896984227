"""The Genesis suites use conductor through its public API only, `conductor.__all__`:
they imported conductor.postgres, conductor.held, conductor.pytest_stack and
conductor.report, whose names and places changed with conductor's layout."""

from __future__ import annotations

import ast
from pathlib import Path

import conductor

TESTS = Path(__file__).resolve().parents[1]


def _private_uses(path: Path, root: Path = TESTS) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("conductor."):
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "conductor":
            found += [
                f"from conductor import {a.name}"
                for a in node.names
                if a.name not in conductor.__all__
            ]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("conductor.")]
        elif (  # code run in a child interpreter (`python -c`) counts too
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and ("from conductor." in node.value or "import conductor." in node.value)
        ):
            found.append(f"{node.value[:60]!r}")
    return [f"{path.relative_to(root)}:{what}" for what in found]


def test_the_suites_import_only_conductors_public_api() -> None:
    here = Path(__file__).resolve()  # its own examples below are planted on purpose
    paths = [p for p in sorted(TESTS.rglob("*.py")) if p != here]
    uses = [use for path in paths for use in _private_uses(path)]
    assert uses == []


def test_the_scan_sees_a_private_import(tmp_path: Path) -> None:
    code = tmp_path / "t.py"
    code.write_text(
        "from conductor.postgres import binaries\nfrom conductor import Stack, quirk\n"
        "import conductor.stack\nCODE = 'from conductor.held import HeldInThread'\n"
    )
    assert sorted(_private_uses(code, tmp_path)) == sorted(
        [
            "t.py:from conductor.postgres import ...",
            "t.py:from conductor import quirk",
            "t.py:import conductor.stack",
            "t.py:'from conductor.held import HeldInThread'",
        ]
    )


def test_every_public_name_resolves() -> None:
    for name in conductor.__all__:
        assert getattr(conductor, name) is not None, name
