"""Hostile configuration ends in one line and exit 2 before anything starts: never a
traceback, never a log written outside the logs folder, never a silently lost service.

Found by writing such files by hand (issue 11, known defects 5, 6 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor.config.loading import load_config
from conductor.errors import ConfigError
from support import Conductor

pytestmark = pytest.mark.conductor

SLEEP = 'command = ["sleep", "1"]'

HOSTILE = {
    "stop_timeout_inf": ("[services.a]", SLEEP, "stop_timeout = inf"),
    "ready_timeout_1e309": ("[services.a]", SLEEP, "ready_timeout = 1e309"),
    "nul_in_argument": ("[services.a]", 'command = ["sleep", "1\\u0000"]'),
    "nul_in_env_key": ("[services.a]", SLEEP, 'env = { "A\\u0000B" = "x" }'),
    "nul_in_env_value": ("[services.a]", SLEEP, 'env = { A = "x\\u0000" }'),
    "equals_in_env_key": ("[services.a]", SLEEP, 'env = { "A=B" = "x" }'),
    "empty_env_key": ("[services.a]", SLEEP, 'env = { "" = "x" }'),
    "nul_in_top_env_key": ('env = { "A\\u0000" = "x" }', "[services.a]", SLEEP),
    "equals_in_run_env_key": ('run = { env = { "A=B" = "x" } }', "[services.a]", SLEEP),
    "nul_in_logs_dir": ('logs_dir = "l\\u0000x"', "[services.a]", SLEEP),
    "name_escapes_logs_dir": ('[services."../../x"]', SLEEP),
    "name_with_newline": ('[services."a\\nb"]', SLEEP),
    "names_collide": ("[services.a-b]", SLEEP, "[services.a_b]", SLEEP),
    "tool_is_text": ('tool = "x"',),
    # issue 18, item 4: tomllib recurses once per level; this was a RecursionError
    "deeply_nested_array": (
        "[services.a]",
        SLEEP,
        "env = { A = " + "[" * 100_000 + "]" * 100_000 + " }",
    ),
    "deeply_nested_table": ("[services.a]", SLEEP, "x = " + "{ a = " * 5_000 + "1" + " }" * 5_000),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_configuration_is_one_line_and_exit_2(
    conductor: Conductor, tmp_path: Path, name: str
) -> None:
    (tmp_path / "c.toml").write_text("\n".join(HOSTILE[name]) + "\n")
    result = conductor.run("run", "--config", "c.toml", "--logs-dir", "logs", "--", "true")
    assert "Traceback" not in result.text, result.text
    assert result.code == 2, result.text
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path.parent / "x.log").exists()
    assert not (tmp_path / "logs").exists()


def test_load_config_raises_only_config_error(tmp_path: Path) -> None:
    """The Python API too: ConfigError, nothing else, for every hostile file."""
    for name, lines in HOSTILE.items():
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ConfigError):
            load_config(path)


@pytest.mark.parametrize("action", ["check", "clean", "up", "found"])
def test_a_deeply_nested_document_is_one_line_in_every_action(
    conductor: Conductor, tmp_path: Path, action: str
) -> None:
    """issue 18, item 4: a RecursionError traceback in check, run and clean alike; also
    when the document is the pyproject.toml found by walking up (no --config)."""
    deep = "\n".join(HOSTILE["deeply_nested_array"]) + "\n"
    if action == "found":
        (tmp_path / "pyproject.toml").write_text(
            deep.replace("[services.a]", "[tool.conductor.services.a]")
        )
        result = conductor.run("check")
    else:
        (tmp_path / "c.toml").write_text(deep)
        result = conductor.run(action, "--config", "c.toml")
    assert "Traceback" not in result.text, result.text
    assert result.code == 2, result.text
    (line,) = result.err.strip().splitlines()
    assert "too deeply nested" in line, line
    assert "c.toml" in line or "pyproject.toml" in line, line
