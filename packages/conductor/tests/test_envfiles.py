"""Settings written once: `.env` files, top-level `env`, `{env.NAME:-default}` and
`{env.NAME:?message}`, the `[run]` table, `python`, and the program looked up on the
service's own (rendered) PATH. Each against real processes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from support import PY

pytestmark = pytest.mark.conductor

# A service that writes its environment and cwd to a file, then serves nothing (braces
# doubled: a service's command is a template).
DUMP = (
    "import json, os, sys, time; "
    "open(sys.argv[1], 'w').write(json.dumps("
    "{{'env': dict(os.environ), 'cwd': os.getcwd(), 'exe': sys.executable}})); "
    "print('dumped', flush=True); time.sleep(60)"
)
COMMAND_DUMP = (
    "import json, os, sys; "
    "open(sys.argv[1], 'w').write(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"
)


def dump_service(out: Path, **keys: object) -> dict[str, object]:
    return {"command": [PY, "-c", DUMP, str(out)], "ready": {"log": "dumped"}, **keys}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_env_files_top_env_and_real_environment_in_their_order(conductor, config, tmp_path):
    (tmp_path / ".env").write_text(
        "FROM_FILE=file\nREAL_WINS=file\nTOP_WINS=file\nDB_NAME=app_db\n"
        'QUOTED="a b # not a comment"\nINTERP=${FROM_FILE}-x\n'
    )
    (tmp_path / "api.env").write_text("API_ONLY=api\nTOP_WINS=api-file\n")
    svc, cmd = tmp_path / "svc.json", tmp_path / "cmd.json"
    config(
        {
            "api": dump_service(
                svc,
                env_file="api.env",
                env={"OWN_WINS": "own", "DATABASE": "postgresql://h/{env.DB_NAME}"},
            )
        },
        env_file=".env",
        env={"TOP_WINS": "top", "OWN_WINS": "top"},
    )
    conductor.env["REAL_WINS"] = "real"
    result = conductor.run(
        "run", "--config", "conductor.toml", "--", PY, "-c", COMMAND_DUMP, str(cmd)
    )
    assert result.code == 0, result.text
    service = read(svc)["env"]
    assert service["FROM_FILE"] == "file"
    assert service["REAL_WINS"] == "real"  # the real environment wins over the file
    assert service["TOP_WINS"] == "top"  # top-level env wins over every file
    assert service["OWN_WINS"] == "own"  # the service's own env wins over top-level env
    assert service["API_ONLY"] == "api"  # the service's own env_file
    assert service["DATABASE"] == "postgresql://h/app_db"  # the file feeds {env.NAME}
    assert service["QUOTED"] == "a b # not a comment"  # python-dotenv's parsing
    assert service["INTERP"] == "file-x"
    command = read(cmd)["env"]
    assert command["FROM_FILE"] == "file"
    assert command["REAL_WINS"] == "real"
    assert command["TOP_WINS"] == "top"
    assert "API_ONLY" not in command  # a service's env_file is that service's


def test_env_defaults_fill_unset_and_empty_variables(conductor, config, tmp_path):
    svc = tmp_path / "svc.json"
    config(
        {
            "api": dump_service(
                svc,
                env={
                    "UNSET": "{env.CONDUCTOR_TEST_UNSET_VAR:-fallback}",
                    "EMPTY": "{env.CONDUCTOR_TEST_EMPTY_VAR:-fallback}",
                    "SET": "{env.CONDUCTOR_TEST_SET_VAR:-fallback}",
                    "PORTS": "{env.CONDUCTOR_TEST_UNSET_VAR:-localhost:5432}",
                },
            )
        }
    )
    conductor.env.pop("CONDUCTOR_TEST_UNSET_VAR", None)
    conductor.env["CONDUCTOR_TEST_EMPTY_VAR"] = ""
    conductor.env["CONDUCTOR_TEST_SET_VAR"] = "given"
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    env = read(svc)["env"]
    assert env["UNSET"] == "fallback"
    assert env["EMPTY"] == "fallback"
    assert env["SET"] == "given"
    assert env["PORTS"] == "localhost:5432"


def test_required_variable_stops_the_run_with_its_message(conductor, config, tmp_path):
    svc = tmp_path / "svc.json"
    config(
        {
            "api": dump_service(
                svc, env={"SECRET": "{env.CONDUCTOR_TEST_UNSET_VAR:?set SECRET in .env first}"}
            )
        }
    )
    conductor.env.pop("CONDUCTOR_TEST_UNSET_VAR", None)
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert "set SECRET in .env first" in result.err
    assert "service 'api'" in result.err
    assert "env.SECRET" in result.err
    assert "Traceback" not in result.err
    assert not svc.exists()  # nothing started


def test_missing_env_file_is_one_line_naming_the_key(conductor, config, tmp_path):
    config({"api": dump_service(tmp_path / "svc.json")}, env_file=["missing.env"])
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "key 'env_file[0]'" in result.err
    assert "missing.env does not exist" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_run_table_gives_command_env_and_cwd_and_env_flags_override(conductor, config, tmp_path):
    (tmp_path / "suite").mkdir()
    cmd = tmp_path / "cmd.json"
    config(
        {"api": dump_service(tmp_path / "svc.json")},
        run={"env": {"KEPT": "run", "OVERRIDDEN": "run", "LOGS": "{logs_dir}"}, "cwd": "suite"},
    )
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--env",
        "OVERRIDDEN=flag",
        "--",
        PY,
        "-c",
        COMMAND_DUMP,
        str(cmd),
    )
    assert result.code == 0, result.text
    dumped = read(cmd)
    assert dumped["env"]["KEPT"] == "run"
    assert dumped["env"]["OVERRIDDEN"] == "flag"  # --env adds to and overrides [run]
    assert dumped["env"]["LOGS"] == str(tmp_path / "logs")
    assert dumped["cwd"] == str(tmp_path / "suite")


def test_program_is_looked_up_on_the_services_rendered_path(conductor, config, tmp_path):
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    tool = tools / "serve-here"
    tool.write_text("#!/bin/sh\necho ready from $0\nexec sleep 60\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    config(
        {
            # The issue's own case: bash is on the real PATH, behind a relative entry.
            "shell": {
                "command": ["bash", "-c", "echo shell ready; exec sleep 60"],
                "env": {"PATH": "venv/bin:{env.PATH}"},
                "ready": {"log": "shell ready"},
            },
            # A program only the rendered PATH has.
            "tool": {
                "command": ["serve-here"],
                "env": {"PATH": "venv/bin:{env.PATH}"},
                "ready": {"log": "ready from"},
            },
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    assert "ready from" in (tmp_path / "logs" / "tool.log").read_text()


def test_python_key_names_the_interpreter_python_means(conductor, config, tmp_path):
    venv_python = tmp_path / "other-python"
    venv_python.symlink_to(PY)
    svc = tmp_path / "svc.json"
    config(
        {"api": {**dump_service(svc), "command": ["{python}", "-c", DUMP, str(svc)]}},
        python="other-python",
    )
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 0, result.text
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    assert read(svc)["exe"] == str(venv_python)  # {python} was the configured one


def test_python_key_that_is_not_an_interpreter_is_refused(conductor, config, tmp_path):
    config({"api": dump_service(tmp_path / "svc.json")}, python="venv/bin/python")
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "key 'python'" in result.err
    assert "not an executable interpreter" in result.err


def test_unknown_run_key_is_refused(conductor, config, tmp_path):
    config({"api": dump_service(tmp_path / "svc.json")}, run={"envs": {}})
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    assert "run.envs" in result.err
    assert len(result.err.strip().splitlines()) == 1
