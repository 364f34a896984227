"""Bad configuration ends before anything starts: exit 2, one line naming file, service, key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conductor.config import templates
from conductor.config.loading import load_config
from conductor.errors import ConfigError
from support import PY, fake

pytestmark = pytest.mark.conductor

OK = {"command": fake("tcp", "--port", "{port}"), "port": "auto"}

BAD = {
    "unknown-key": ({"svc": {**OK, "colour": "red"}}, "service 'svc'", "key 'colour'"),
    "missing-command": ({"svc": {"port": 1234}}, "service 'svc'", "key 'command'"),
    "unknown-dependency": (
        {"svc": {**OK, "depends_on": ["nope"]}},
        "unknown service 'nope'",
        "key 'depends_on'",
    ),
    "cycle": (
        {"a": {**OK, "depends_on": ["b"]}, "b": {**OK, "depends_on": ["a"]}},
        "dependency cycle: a -> b -> a",
        "key 'depends_on'",
    ),
    "bad-template": (
        {"svc": {**OK, "env": {"X": "{services.svc.colour}"}}},
        "service 'svc'",
        "key 'env.X'",
    ),
    "unknown-placeholder": (
        {"svc": {"command": [PY, "{pyhton}"]}},
        "unknown placeholder '{pyhton}'",
        "key 'command[1]'",
    ),
    "port-value": ({"svc": {**OK, "port": "eighty"}}, "1 to 65535", "key 'port'"),
    "shell-string": (
        {"svc": {"command": "python -m http.server"}},
        "argument lists",
        "key 'command'",
    ),
    "missing-program": (
        {"svc": {"command": ["no-such-program-xyz"]}},
        "was not found on PATH",
        "key 'command[0]'",
    ),
    "bad-signal": (
        {"svc": {**OK, "stop_signal": "SIGNOPE"}},
        "unknown signal",
        "key 'stop_signal'",
    ),
    "bad-ready": (
        {"svc": {**OK, "ready": {"http": "/", "tcp": True}}},
        "exactly one",
        "key 'ready'",
    ),
    "password-on-a-process": (
        {"svc": {**OK, "password": "x"}},
        'is only for kind = "postgres"',
        "key 'password'",
    ),
    "empty-password": (
        {"db": {"kind": "postgres", "password": ""}},
        "must not be empty",
        "key 'password'",
    ),
    # The log probe matches bytes: escapes only a str pattern knows are refused up front.
    "log-regex-unicode-escape": (
        {"svc": {**OK, "ready": {"log": r"caf\u00e9 ready"}}},
        "bad escape \\u",
        "service 'svc'",
        "key 'ready.log'",
    ),
    "log-regex-named-char": (
        {"svc": {**OK, "ready": {"log": r"\N{EM DASH} ready"}}},
        "bad escape \\N",
        "key 'ready.log'",
    ),
    "log-regex-unicode-flag": (
        {"svc": {**OK, "ready": {"log": "(?u)ready"}}},
        "cannot use 'u' flag with a bytes pattern",
        "key 'ready.log'",
    ),
    "log-regex-huge-repeat": (
        {"svc": {**OK, "ready": {"log": "a{4294967296}"}}},
        "repetition number is too large",
        "key 'ready.log'",
    ),
    "user-on-a-process": (
        {"svc": {**OK, "user": "app"}},
        'is only for kind = "postgres"',
        "key 'user'",
    ),
    "postgres-setting-name": (
        {"db": {"kind": "postgres", "settings": {"1bad": "x"}}},
        "is not a server setting name",
        "key 'settings.1bad'",
    ),
    "postgres-version-word": (
        {"db": {"kind": "postgres", "version": "fifteen"}},
        'must be a major version such as "15"',
        "key 'version'",
    ),
    "postgres-attribute-of-a-process": (
        {"svc": {**OK, "env": {"X": "{services.svc.password}"}}},
        "offers only host, port, url, not 'password' (kind postgres)",
        "key 'env.X'",
    ),
    "postgres-user-from-a-service": (
        {"db": {"kind": "postgres", "user": "u{services.db.port}"}},
        "may use {env.NAME}",
        "key 'user'",
    ),
    "unset-env": (
        {"svc": {**OK, "env": {"X": "{env.CONDUCTOR_SURELY_UNSET}"}}},
        "CONDUCTOR_SURELY_UNSET is not set",
        "key 'env.X'",
    ),
    # defect 5: what no program argument or environment variable can hold
    "nul-in-argument": (
        {"svc": {**OK, "command": [*OK["command"], "a\0b"]}},
        "contains a NUL byte",
        f"key 'command[{len(OK['command'])}]'",
    ),
    "nul-in-env-value": ({"svc": {**OK, "env": {"X": "a\0b"}}}, "NUL byte", "key 'env.X'"),
    "nul-in-env-key": ({"svc": {**OK, "env": {"A\0B": "x"}}}, "NUL byte", "key 'env.A\\x00B'"),
    "equals-in-env-key": ({"svc": {**OK, "env": {"A=B": "x"}}}, "'='", "key 'env.A=B'"),
    "empty-env-key": ({"svc": {**OK, "env": {"": "x"}}}, "empty", "key 'env.'"),
    "equals-in-top-env-key": ({"svc": OK}, "'='", "key 'env.A=B'", {"env": {"A=B": "x"}}),
    "equals-in-run-env-key": (
        {"svc": OK},
        "'='",
        "key 'run.env.A=B'",
        {"run": {"env": {"A=B": "x"}}},
    ),
    # defect 6: NaN and infinity are no number of seconds
    "nan-ready-timeout": (
        {"svc": {**OK, "ready_timeout": float("nan")}},
        "finite",
        "key 'ready_timeout'",
    ),
    "inf-ready-timeout": (
        {"svc": {**OK, "ready_timeout": float("inf")}},
        "finite",
        "key 'ready_timeout'",
    ),
    "nan-stop-timeout": (
        {"svc": {**OK, "stop_timeout": float("nan")}},
        "finite",
        "key 'stop_timeout'",
    ),
    "inf-stop-timeout": (
        {"svc": {**OK, "stop_timeout": float("inf")}},
        "finite",
        "key 'stop_timeout'",
    ),
    "negative-stop-timeout": (
        {"svc": {**OK, "stop_timeout": -1}},
        "positive",
        "key 'stop_timeout'",
    ),
    # defect 8: a name becomes a file name and NAME_URL
    "name-climbs-out": ({"../../x": OK}, "service name '../../x'", "may hold only"),
    "name-with-slash": ({"a/b": OK}, "service name 'a/b'", "may hold only"),
    "name-not-ascii": ({"café": OK}, "service name 'café'", "may hold only"),
    "name-too-long": ({"a" * 64: OK}, "may hold only 1 to 63"),
    "same-variables": ({"a-b": OK, "a_b": OK}, "'a-b' and 'a_b'", "A_B_URL"),
    # kind = "container" (issue 20 item 4)
    "container-without-image": (
        {"c": {"kind": "container"}},
        'is required for kind = "container"',
        "key 'image'",
    ),
    "container-port-without-port": (
        {"c": {"kind": "container", "image": "x:1", "container_port": 6379}},
        "needs port",
        "key 'container_port'",
    ),
    "port-without-container-port": (
        {"c": {"kind": "container", "image": "x:1", "port": "auto"}},
        "published from container_port",
        "key 'port'",
    ),
    "unknown-engine": (
        {"c": {"kind": "container", "image": "x:1", "engine": "lxc"}},
        """must be "podman" or "docker", not 'lxc'""",
        "key 'engine'",
    ),
    "bad-pull": (
        {"c": {"kind": "container", "image": "x:1", "pull": "sometimes"}},
        'must be one of "missing", "never", "always"',
        "key 'pull'",
    ),
    "image-on-a-process": (
        {"svc": {**OK, "image": "x:1"}},
        'is only for kind = "container"',
        "key 'image'",
    ),
    "pull-on-a-process": (
        {"svc": {**OK, "pull": "never"}},
        'is only for kind = "container"',
        "key 'pull'",
    ),
    "container-with-cwd": (
        {"c": {"kind": "container", "image": "x:1", "cwd": "."}},
        "its image's working directory",
        "key 'cwd'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_configuration_exits_2_naming_file_service_key(conductor, config, tmp_path, case):
    services, *expected = BAD[case]
    top = next((e for e in expected if isinstance(e, dict)), {})  # top-level keys, if any
    expected = [e for e in expected if isinstance(e, str)]
    config(services, **top)
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert "Traceback" not in result.text
    assert str(tmp_path / "conductor.toml") in result.err
    for text in expected:
        assert text in result.err
    assert not (tmp_path / "logs").exists()  # nothing started, nothing written


def test_taken_port_is_refused_before_anything_starts(conductor, config, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config({"early": OK, "svc": {"command": fake("tcp", "--port", "{port}"), "port": port}})
        result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert f"port {port} on 127.0.0.1 is already taken by pid" in result.err
    assert "service 'svc', key 'port'" in result.err
    assert "--auto-ports" in result.err
    assert not (tmp_path / "logs" / "early.log").exists()


def test_invalid_toml_and_missing_file(conductor, tmp_path):
    (tmp_path / "conductor.toml").write_text("[services.a\ncommand = 1")
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2
    assert "is not valid TOML" in result.err
    missing = conductor.run("check", "--config", "nope.toml")
    assert missing.code == 2
    assert "nope.toml: file not found" in missing.err


def test_unknown_service_on_command_line(conductor, config):
    config({"svc": OK})
    result = conductor.run("run", "--config", "conductor.toml", "nope", "--", PY, "-c", "pass")
    assert result.code == 2
    assert "unknown service 'nope' on the command line (known: svc)" in result.err


def test_run_without_command_is_a_usage_error(conductor, config):
    config({"svc": OK})
    result = conductor.run("run", "--config", "conductor.toml")
    assert result.code == 2
    assert "run needs a COMMAND after --" in result.err


def test_pyproject_is_found_by_walking_up(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.conductor]\nlogs_dir = "out"\n'
        '[tool.conductor.services.web]\ncommand = ["srv", "{port}"]\nport = 3000\n'
        'depends_on = ["api"]\n'
        '[tool.conductor.services.api]\ncommand = ["srv"]\nport = "auto"\n'
        'ready = { http = "/health" }\n'
    )
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    config = load_config()
    assert config.file == tmp_path / "pyproject.toml"
    assert config.logs_dir == tmp_path / "out"
    assert list(config.services) == ["api", "web"]  # dependency order
    assert config.services["web"].ready.kind == "tcp"  # a port and no ready: tcp
    assert config.services["api"].ready.target == "/health"


def test_a_standalone_conductor_toml_is_found_first_in_each_folder(
    conductor, tmp_path, monkeypatch
):
    """issue 19, item 5: a conductor.toml in the working folder needed --config on every
    call. In each folder from there up, conductor.toml comes before pyproject.toml; a
    nearer pyproject still wins over a conductor.toml further up."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.conductor]\nlogs_dir = "from-pyproject"\n'
        '[tool.conductor.services.svc]\ncommand = ["x"]\n'
    )
    (tmp_path / "conductor.toml").write_text(
        'logs_dir = "from-standalone"\n[services.svc]\ncommand = ["x"]\n'
    )
    monkeypatch.chdir(tmp_path)
    assert load_config().file == tmp_path / "conductor.toml"
    nested = tmp_path / "app"
    nested.mkdir()
    (nested / "pyproject.toml").write_text(
        '[tool.conductor]\n[tool.conductor.services.svc]\ncommand = ["x"]\n'
    )
    monkeypatch.chdir(nested)
    assert load_config().file == nested / "pyproject.toml"
    # the CLI finds it too, with no --config: its error names the file it found
    (tmp_path / "conductor.toml").write_text('logs_dir = "logs"\n[services.svc]\ncommand = []\n')
    result = conductor.run("check")
    assert result.code == 2, result.text
    assert str(tmp_path / "conductor.toml") in result.err


def test_nothing_to_find_names_both_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no conductor.toml, and no pyproject.toml with"):
        load_config()


def test_pyproject_without_table_is_an_error(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"has no \[tool.conductor\] table"):
        load_config(tmp_path / "pyproject.toml")


def test_templates_render_and_escape():
    context = {"host": "127.0.0.1", "port": "80", "services.db.url": "postgresql://x"}
    assert templates.render("{{literal}} {host}:{port} {services.db.url}", context) == (
        "{literal} 127.0.0.1:80 postgresql://x"
    )
    with pytest.raises(templates.TemplateError, match="unclosed"):
        list(templates.fields("{host"))
    with pytest.raises(templates.TemplateError, match="has no value"):
        templates.render("{url}", {})


def test_an_unparsable_nearest_pyproject_stops_the_search_naming_it(conductor, tmp_path):
    """Issue 11, defect 9: it was skipped, and a parent folder's [tool.conductor] ran."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.conductor.services.parent]\ncommand = ["true"]\n'
    )
    child = tmp_path / "child"
    child.mkdir()
    (child / "pyproject.toml").write_text("[tool.conductor\nbroken = \n")
    conductor.cwd = child
    result = conductor.run("check")
    assert result.code == 2, result.text
    assert str(child / "pyproject.toml") in result.err
    assert "is not valid TOML" in result.err
    assert "pass --config FILE" in result.err
    assert "parent" not in result.out


def api(tmp_path: Path, code: str) -> str:
    """Run `code` (which uses conductor's Python API) in a fresh interpreter in tmp_path
    and return its printed outcome: the API's processes stay out of the test process."""
    import subprocess

    script = "import conductor\nfrom conductor import *\n" + code
    proc = subprocess.run(
        [PY, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return (proc.stdout + proc.stderr).strip()


def test_nul_in_command_or_env_through_the_api_is_one_error(config, tmp_path):
    # defect 5: a NUL byte reached exec (ValueError: embedded null byte, a traceback)
    config({"svc": OK})
    out = api(
        tmp_path,
        "import asyncio, sys\n"
        "from conductor import runner\n"
        "cases = {'command': (['x\\0y'], {}), 'env value': ([sys.executable, '-c', 'pass'],"
        " {'A': 'x\\0y'}), 'env name': ([sys.executable, '-c', 'pass'], {'A=B': 'x'})}\n"
        "for what, (argv, env) in cases.items():\n"
        "    try:\n"
        "        status = asyncio.run(runner.run(load_config('conductor.toml'), argv,"
        " runner.Options(env=env)))\n"
        "        print(what, 'status', status)\n"
        "    except ConductorError as exc:\n"
        "        print(what, 'refused:', exc, exc.exit_code)\n",
    )
    assert (
        "command refused: COMMAND argument 1 contains a NUL byte, which no program argument can hold 2"
        in out
    )
    assert "conductor: key '--env A': contains a NUL byte" in out
    assert "conductor: key '--env A=B': a variable name cannot contain '='" in out
    assert out.count("status 2") == 2, out
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tool = "x"\n', "key 'tool': must be a table"),
        ('[tool]\nconductor = "x"\n', "key 'tool.conductor': must be a table"),
    ],
)
def test_pyproject_whose_tool_is_not_a_table(conductor, tmp_path, text, message):
    # defect 5: `tool = "x"` was a traceback (AttributeError), found or named
    (tmp_path / "pyproject.toml").write_text(text + '[project]\nname = "x"\n')
    for args in (["check", "--config", "pyproject.toml"], ["check"]):
        result = conductor.run(*args)
        assert result.code == 2, result.text
        assert result.err == f"conductor: {tmp_path / 'pyproject.toml'}, {message}\n"
    assert len(result.err.strip().splitlines()) == 1
