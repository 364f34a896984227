"""A run of some of the services works with the configuration of the whole stack
(issue 19, item 1): an environment entry naming a service outside the run is left out,
the same way in the top-level env, a service's env and [run].env, and `conductor check
SERVICE...` says what was left out and why; a command, cwd or url naming one is still
an error, with that reason. And who wins the environment is said, not silent (item 2):
an automatic NAME_* variable that replaces an env_file's or the shell's value says so
once, and [run].env keeps the user's value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import PY

LISTEN = (
    "import socket, sys, time; s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(120)"
)
DUMP = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
SERVE_AND_DUMP = (
    "import json, os, socket, sys, time; "
    "open(sys.argv[2], 'w').write(json.dumps(dict(os.environ))); s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(120)"
)
OUTSIDE = "'db' is not part of this run (services: frontend)"


@pytest.fixture
def whole_stack(config, tmp_path: Path) -> Path:
    """The layout the README recommends: shared settings that name the database."""
    return config(
        {
            "db": {"command": [PY, "-c", LISTEN, "{port}"], "port": "auto"},
            "frontend": {
                "command": [PY, "-c", SERVE_AND_DUMP, "{port}", str(tmp_path / "front.json")],
                "port": "auto",
                "env": {"API_URL": "{services.db.url}", "OWN": "kept"},
            },
        },
        env={"DATABASE_URL": "{services.db.url}", "SHARED": "kept"},
        run={"env": {"DB_HOST": "{services.db.host}", "RUN_OWN": "kept"}},
    )


@pytest.mark.conductor
def test_a_subset_run_leaves_out_what_names_a_service_outside_it(conductor, whole_stack, tmp_path):
    out = tmp_path / "command.json"
    result = conductor.run(
        "run", "--config", str(whole_stack), "frontend", "--", PY, "-c", DUMP, str(out)
    )
    assert result.code == 0, result.text
    command = json.loads(out.read_text())
    front = json.loads((tmp_path / "front.json").read_text())
    assert {"DATABASE_URL", "DB_HOST", "DB_URL"}.isdisjoint(command)
    assert command["SHARED"] == command["RUN_OWN"] == "kept"
    assert {"DATABASE_URL", "API_URL"}.isdisjoint(front)
    assert front["SHARED"] == front["OWN"] == "kept"


@pytest.mark.conductor
def test_check_of_a_subset_lists_what_is_left_out_and_why(conductor, whole_stack):
    result = conductor.run("check", "--config", str(whole_stack), "frontend")
    assert result.code == 0, result.text
    assert "start order: frontend\n" in result.out
    for key in ("env.DATABASE_URL", "services.frontend.env.API_URL", "run.env.DB_HOST"):
        assert f"  {key}: left out ({OUTSIDE})" in result.out, result.out
    whole = conductor.run("check", "--config", str(whole_stack))
    assert whole.code == 0, whole.text
    assert "left out" not in whole.out


@pytest.mark.conductor
@pytest.mark.parametrize("key", ["command", "cwd", "url"])
def test_a_command_cwd_or_url_naming_a_service_outside_the_run_is_an_error(conductor, config, key):
    frontend: dict[str, object] = {"command": [PY, "-c", LISTEN, "{port}"], "port": "auto"}
    if key == "command":
        frontend["command"] = [PY, "-c", LISTEN, "{port}", "{services.db.port}"]
    elif key == "cwd":
        frontend["cwd"] = "{services.db.host}"
    else:
        frontend["url"] = "http://{services.db.host}:{port}/"
    cfg = config({"db": {"command": [PY, "-c", LISTEN, "{port}"], "port": "auto"},
                  "frontend": frontend})  # fmt: skip
    result = conductor.run("run", "--config", str(cfg), "frontend", "--", "true")
    assert result.code == 2, result.text
    [line] = result.err.strip().splitlines()
    assert "service 'frontend'" in line, line
    assert f"key '{key}" in line, line
    assert OUTSIDE in line, line


@pytest.mark.conductor
@pytest.mark.parametrize("where", ["inherited", "env_file"])
def test_an_automatic_address_that_replaces_a_value_says_so_once(
    conductor, config, tmp_path, where
):
    out = tmp_path / "command.json"
    top: dict[str, object] = {}
    conductor.env.pop("FRONTEND_URL", None)
    if where == "inherited":
        conductor.env["FRONTEND_URL"] = "http://stale.example:1/"
    else:
        (tmp_path / ".env").write_text("FRONTEND_URL=http://from-the-file:1/\n")
        top["env_file"] = ".env"
    cfg = config({"frontend": {"command": [PY, "-c", LISTEN, "{port}"], "port": "auto"}}, **top)
    result = conductor.run("run", "--config", str(cfg), "--", PY, "-c", DUMP, str(out))
    assert result.code == 0, result.text
    said = "the inherited environment" if where == "inherited" else "an env_file"
    notice = (
        f"FRONTEND_URL: conductor's address replaces the value from {said}; to keep that "
        'value, set FRONTEND_URL = "{env.FRONTEND_URL}" in [run].env'
    )
    assert result.text.count(notice) == 1, result.text
    assert json.loads(out.read_text())["FRONTEND_URL"].startswith("http://127.0.0.1:")


@pytest.mark.conductor
def test_run_env_keeps_the_users_value_and_nothing_is_said(conductor, config, tmp_path):
    out = tmp_path / "command.json"
    conductor.env["FRONTEND_URL"] = "http://mine:1/"
    cfg = config(
        {"frontend": {"command": [PY, "-c", LISTEN, "{port}"], "port": "auto"}},
        run={"env": {"FRONTEND_URL": "{env.FRONTEND_URL}"}},
    )
    result = conductor.run("run", "--config", str(cfg), "--", PY, "-c", DUMP, str(out))
    assert result.code == 0, result.text
    assert "replaces the value" not in result.text
    assert json.loads(out.read_text())["FRONTEND_URL"] == "http://mine:1/"
