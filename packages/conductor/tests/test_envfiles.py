"""Settings written once: `.env` files, top-level `env`, `{env.NAME:-default}` and
`{env.NAME:?message}`, the `[run]` table, `python`, and the program looked up on the
service's own (rendered) PATH. Each against real processes."""

from __future__ import annotations

import json
import os
import stat
import time
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


def test_env_defaults_and_messages_nest_as_in_docker_compose(conductor, config, tmp_path):
    """issue 18, item 3: `{env.X:-{env.Y}}` is compose's `${X:-${Y}}`. It used to become
    the literal text `{env.X:-fromY}` (the inner field filled, the outer left as text),
    and check and run both exited 0."""
    svc, cmd = tmp_path / "svc.json", tmp_path / "cmd.json"
    nested = {
        "INNER": "{env.CONDUCTOR_TEST_UNSET_VAR:-{env.CONDUCTOR_TEST_SET_VAR}}",
        "DEEPER": "{env.CONDUCTOR_TEST_UNSET_VAR:-{env.CONDUCTOR_TEST_UNSET_TOO:-deep}}",
        "OUTER_SET": "{env.CONDUCTOR_TEST_SET_VAR:-{env.CONDUCTOR_TEST_UNSET_VAR}}",
        "AROUND": "<{env.CONDUCTOR_TEST_UNSET_VAR:-a{env.CONDUCTOR_TEST_SET_VAR}b}>",
        "BRACES": "{env.CONDUCTOR_TEST_UNSET_VAR:-{{x}}}}}",
        "PORT": "{env.CONDUCTOR_TEST_UNSET_VAR:-{host}:{port}}",
    }
    config(
        {"api": {**dump_service(svc, env=nested), "port": "auto"}},
        run={
            "env": {
                "FROM_RUN": nested["INNER"],
                "DB": "{env.CONDUCTOR_TEST_UNSET_VAR:-{services.api.url}}",
            }
        },
    )
    conductor.env.pop("CONDUCTOR_TEST_UNSET_VAR", None)
    conductor.env.pop("CONDUCTOR_TEST_UNSET_TOO", None)
    conductor.env["CONDUCTOR_TEST_SET_VAR"] = "fromY"
    checked = conductor.run("check", "--config", "conductor.toml")
    assert checked.code == 0, checked.text
    result = conductor.run(
        "run", "--config", "conductor.toml", "--", PY, "-c", COMMAND_DUMP, str(cmd)
    )
    assert result.code == 0, result.text
    env, command_env = read(svc)["env"], read(cmd)["env"]
    port = command_env["API_PORT"]
    assert env["INNER"] == "fromY"
    assert env["DEEPER"] == "deep"
    assert env["OUTER_SET"] == "fromY"  # the default is not needed: its unset Y is no error
    assert env["AROUND"] == "<afromYb>"
    assert env["BRACES"] == "{x}}"
    assert env["PORT"] == f"127.0.0.1:{port}"
    assert command_env["FROM_RUN"] == "fromY"
    assert command_env["DB"] == f"http://127.0.0.1:{port}"


def test_a_required_variables_message_may_use_another_variable(conductor, config, tmp_path):
    """`{env.X:?{env.Y}}`: compose's `${X:?${Y}}`, the message filled in."""
    svc = tmp_path / "svc.json"
    config(
        {
            "api": dump_service(
                svc,
                env={"SECRET": "{env.CONDUCTOR_TEST_UNSET_VAR:?{env.CONDUCTOR_TEST_SET_VAR}}"},
            )
        }
    )
    conductor.env.pop("CONDUCTOR_TEST_UNSET_VAR", None)
    conductor.env["CONDUCTOR_TEST_SET_VAR"] = "put SECRET in .env"
    for args in (["check"], ["run"]):
        tail = ["--", PY, "-c", "pass"] if args == ["run"] else []
        result = conductor.run(*args, "--config", "conductor.toml", *tail)
        assert result.code == 2, result.text
        (line,) = result.err.strip().splitlines()
        assert line.endswith("key 'env.SECRET': put SECRET in .env"), line
    assert not svc.exists()  # nothing started


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        ("service env", {"env": {"A": "a}b"}}),
        ("command", {"command": [PY, "-c", "pass}"]}),
        ("nested default", {"env": {"A": "{env.CONDUCTOR_TEST_UNSET_VAR:-x}}y}"}}),
    ],
)
def test_a_lone_closing_brace_is_exit_2_naming_the_key(conductor, config, tmp_path, where, keys):
    """`{{` and `}}` are the documented escapes; a lone `}` is a mistake (a brace left
    over from an edit), not a literal: exit 2 in check and run alike."""
    svc = tmp_path / "svc.json"
    config({"api": {**dump_service(svc), **keys}})
    key = "command[2]" if where == "command" else "env.A"
    for args in (["check"], ["run"]):
        tail = ["--", PY, "-c", "pass"] if args == ["run"] else []
        result = conductor.run(*args, "--config", "conductor.toml", *tail)
        assert result.code == 2, (where, result.text)
        (line,) = result.err.strip().splitlines()
        assert f"service 'api', key '{key}'" in line, line
        assert "'}}'" in line, line  # says how to write a literal brace
    assert not svc.exists()


@pytest.mark.parametrize(
    ("kind", "what"), [("fifo", "a FIFO"), ("device", "a device"), ("folder", "a folder")]
)
def test_an_env_file_that_is_no_file_says_what_it_is(conductor, config, tmp_path, kind, what):
    """issue 18, item 4: each was "does not exist". A FIFO is never opened (an open
    waits for a writer), so the run cannot hang on one either."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "odd.env")
        written = "odd.env"
    elif kind == "device":
        written = os.devnull
    else:
        (tmp_path / "odd.env").mkdir()
        written = "odd.env"
    config({"api": dump_service(tmp_path / "svc.json")}, env_file=written)
    result = conductor.run("check", "--config", "conductor.toml", timeout=60)
    assert result.code == 2, result.text
    (line,) = result.err.strip().splitlines()
    assert "key 'env_file'" in line, line
    assert f"it is {what}, not a plain file" in line, line
    assert "does not exist" not in line


def test_an_unparsable_env_file_line_is_exit_2_naming_file_and_line(conductor, config, tmp_path):
    """issue 18, item 4: python-dotenv's own warning ("could not parse statement
    starting at line 2", naming no file), and the run went on without the variable."""
    (tmp_path / "api.env").write_text("GOOD=1\nexport SECRET hunter2 = x\nLATER=3\n")
    svc = tmp_path / "svc.json"
    config({"api": dump_service(svc, env_file="api.env")})
    for args in (["check"], ["run"]):
        tail = ["--", PY, "-c", "pass"] if args == ["run"] else []
        result = conductor.run(*args, "--config", "conductor.toml", *tail)
        assert result.code == 2, result.text
        (line,) = result.err.strip().splitlines()
        assert "service 'api', key 'env_file'" in line, line
        assert f"{tmp_path / 'api.env'}:2:" in line, line
        assert "hunter2" not in line  # a line of a .env may hold a secret: never shown
    assert not svc.exists()


def test_reading_an_env_file_takes_time_in_proportion_to_its_size(tmp_path):
    """issue 18, item 4: python-dotenv's interpolation copies the environment and every
    variable read so far for each variable: 16,000 variables took 3.5 s. Eight times
    the variables must take about eight times as long, not sixty-four (best of three,
    so a busy machine does not decide it)."""
    from conductor.config import envfile

    def seconds(count: int) -> float:
        path = tmp_path / f"{count}.env"
        path.write_text("".join(f"VAR_{i}=value-{i}-${{HOME}}\n" for i in range(count)))
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            values = envfile.read(path.name, root=tmp_path, file=tmp_path / "c.toml")
            best = min(best, time.perf_counter() - began)
        assert len(values) == count
        assert values[f"VAR_{count - 1}"] == f"value-{count - 1}-{os.environ['HOME']}"
        return best

    small, large = seconds(2_000), seconds(16_000)
    assert large < 20 * small, (small, large)


def test_the_values_are_python_dotenvs_own(tmp_path, monkeypatch):
    """The linear reader gives what dotenv_values(interpolate=True) gives: the real
    environment under the values read so far, a later line winning, a bare NAME empty."""
    from dotenv import dotenv_values

    from conductor.config import envfile

    monkeypatch.setenv("CONDUCTOR_TEST_SET_VAR", "real")
    monkeypatch.delenv("CONDUCTOR_TEST_UNSET_VAR", raising=False)
    text = (
        "\ufeffA=1\nexport B='two words'\nC=\"${A}-${CONDUCTOR_TEST_SET_VAR}\"\n"
        "D=${CONDUCTOR_TEST_UNSET_VAR:-fallback} # comment\nBARE\nE=${BARE:-x}\n"
        "A=again\nF=${A}${LATER}\nLATER=late\nG='${A}'\nH=\"multi\nline\"\n"
        "CONDUCTOR_TEST_SET_VAR=file\nI=${CONDUCTOR_TEST_SET_VAR}\n"
    )
    (tmp_path / ".env").write_text(text)
    expected = {k: v or "" for k, v in dotenv_values(tmp_path / ".env").items()}
    assert envfile.read(".env", root=tmp_path, file=tmp_path / "c.toml") == expected
    assert expected["I"] == "file"  # the file's value over the real one, as dotenv does


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_run_cwd_that_is_no_folder_is_exit_2_naming_the_key(conductor, config, tmp_path, kind):
    """issue 18, item 4: COMMAND's spawn failed instead: 127 (missing) or 126 (a file),
    as if COMMAND itself could not be found or run, and after the services started."""
    if kind == "file":
        (tmp_path / "suite").write_text("")
    svc = tmp_path / "svc.json"
    config({"api": dump_service(svc)}, run={"cwd": "suite"})
    for args in (["check"], ["run"]):
        tail = ["--", PY, "-c", "pass"] if args == ["run"] else []
        result = conductor.run(*args, "--config", "conductor.toml", *tail)
        assert result.code == 2, result.text
        (line,) = result.err.strip().splitlines()
        assert "key 'run.cwd'" in line, line
        assert str(tmp_path / "suite") in line, line
    assert not svc.exists()  # refused before any service started
