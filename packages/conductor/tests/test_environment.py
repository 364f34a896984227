"""The one environment: the same layers in the same order for every process, whatever
kind of stack gives it (started by `run`, attached to an `up`, the pytest plugin's own,
the surrounding `conductor run` of a pytest run), against real processes that write
their environment down; the order as the README's table writes it; and a scan of
conductor's source proving no other module merges these layers itself."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conductor import environment
from conductor.environment import Layer
from support import PY, write_config

SOURCE = Path(environment.__file__).parent
README = Path(__file__).parent.parent / "README.md"

# The service: listens on its port (the tcp probe), then writes its environment down.
SERVE = (
    "import json, os, socket, sys, time; s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); "
    "open(sys.argv[2], 'w').write(json.dumps(dict(os.environ))); time.sleep(120)"
)
COMMAND_DUMP = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
# What the process inherits: the shell's, with stale values of its own.
INHERITED = {
    "FILE_VS_INHERITED": "inherited",
    "WEB_PORT": "1",  # a stale address: the automatic one wins
    "STALE": "inherited",  # a stale value the request sets: the request wins
}
# One variable per boundary between two layers: which one wins, for every kind.
REQUEST = {
    "OWN_VS_REQUEST": "request",
    "STALE": "request",
    # names a service outside this run: left out, so [run].env's value shows
    "LEFT_OUT": "{services.other.url}",
    "SITE": "http://{services.web.host}:{services.web.port}/site",
    "PYTHON_USED": "{python}",  # the configuration's `python`, in every kind
}
# said once when the automatic WEB_PORT replaces the inherited, stale one
STALE_PORT_NOTICE = (
    "WEB_PORT: conductor's address replaces the value from the inherited environment"
)
BARE = ("-p", "no:randomly", "-p", "no:asyncio", "-p", "no:cacheprovider")


def stack_config(folder: Path, out: Path) -> Path:
    (folder / ".env").write_text("FILE_ONLY=file\nFILE_VS_INHERITED=file\nPYTHONUNBUFFERED=0\n")
    (folder / "configured-python").symlink_to(PY)  # not conductor's own path
    return write_config(
        folder / "conductor.toml",
        {
            "web": {
                "command": [PY, "-c", SERVE, "{port}", str(out)],
                "port": "auto",
                "env": {"SHARED_VS_OWN": "own"},
            },
            "other": {"command": [PY, "-c", "pass"], "port": "auto"},
        },
        logs_dir="logs",
        python="configured-python",
        env_file=".env",
        env={"SHARED_ONLY": "shared", "SHARED_VS_OWN": "shared"},
        run={
            "env": {
                "SHARED_VS_OWN": "own",
                "OWN_VS_REQUEST": "own",
                "LEFT_OUT": "own",
                # explicit configuration wins over the automatic variable
                "WEB_URL": "{services.web.url}/api",
            }
        },
    )


def expected(port: str, logs: Path) -> dict[str, str]:
    return {
        "FILE_ONLY": "file",
        "FILE_VS_INHERITED": "inherited",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": port,
        "WEB_URL": f"http://127.0.0.1:{port}/api",
        "SHARED_ONLY": "shared",
        "SHARED_VS_OWN": "own",
        "OWN_VS_REQUEST": "request",
        "STALE": "request",
        "LEFT_OUT": "own",
        "SITE": f"http://127.0.0.1:{port}/site",
        "CONDUCTOR_LOGS_DIR": str(logs),
        "PYTHON_USED": str(logs.parent / "configured-python"),
    }


@pytest.fixture
def inherited(conductor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same inherited environment for conductor and for pytest, and none of a
    surrounding run's variables."""
    gone = ("CONDUCTOR_RUN_ID", "CONDUCTOR_SERVICE", "CONDUCTOR_LOGS_DIR", "WEB_URL")
    for name in (*gone, "PYTHONUNBUFFERED"):
        monkeypatch.delenv(name, raising=False)
        conductor.env.pop(name, None)
    monkeypatch.setenv("CONDUCTOR_TEST_MARKER", conductor.marker)
    for name, value in INHERITED.items():
        monkeypatch.setenv(name, value)
        conductor.env[name] = value


def flags(request: dict[str, str], option: str) -> list[str]:
    return [arg for key, value in request.items() for arg in (option, f"{key}={value}")]


def pytest_dumping(pytester: pytest.Pytester, out: Path) -> None:
    """A test that writes down its worker's environment (run with -n 1)."""
    pytester.makepyfile(
        test_dump=f"""
        import json, os
        def test_dump(conductor_stack, worker_id):
            assert worker_id != "master"
            open({str(out)!r}, "w").write(json.dumps(dict(os.environ)))
        """
    )


def run_started(conductor, pytester, cfg: Path, out: Path, up) -> None:
    result = conductor.run(
        "run", "--config", str(cfg), *flags(REQUEST, "--env"), "web", "--",
        PY, "-c", COMMAND_DUMP, str(out),
    )  # fmt: skip
    assert result.code == 0, result.text
    assert STALE_PORT_NOTICE in result.text


def run_attached(conductor, pytester, cfg: Path, out: Path, up) -> None:
    live = up(cfg, "web")
    result = conductor.run(
        "run", "--config", str(cfg), "--attach=require", *flags(REQUEST, "--env"), "web",
        "--", PY, "-c", COMMAND_DUMP, str(out),
    )  # fmt: skip
    assert result.code == 0, result.text
    assert STALE_PORT_NOTICE in result.text
    assert live.alive()


def run_pytest_own(conductor, pytester, cfg: Path, out: Path, up) -> None:
    pytest_dumping(pytester, out)
    args = ["--conductor-config", str(cfg), "--conductor-stack", "web", "-n", "1"]
    result = pytester.runpytest_subprocess(
        *BARE, *args, *flags(REQUEST, "--conductor-env"), timeout=120
    )
    result.assert_outcomes(passed=1)
    assert "conductor: started web" in result.stdout.str()


def run_surrounding(conductor, pytester, cfg: Path, out: Path, up) -> None:
    pytest_dumping(pytester, out)
    args = ["--conductor-config", str(cfg), "--conductor-stack", "web", "-n", "1"]
    result = conductor.run(
        "run", "--config", str(cfg), "web", "--",
        PY, "-m", "pytest", *BARE, *args, *flags(REQUEST, "--conductor-env"),
        str(pytester.path),
    )  # fmt: skip
    assert result.code == 0, result.text
    assert "conductor: inside `conductor run`" in result.out


KINDS: dict[str, Callable[..., None]] = {
    "started": run_started,
    "attached": run_attached,
    "pytest-own": run_pytest_own,
    "surrounding": run_surrounding,
}


@pytest.mark.conductor
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_stack_gives_the_same_environment(
    kind, conductor, pytester, up, inherited, tmp_path
):
    """COMMAND (or the pytest worker) sees each layer win where the order says, the
    same in every kind of stack."""
    served, out = tmp_path / "service.json", tmp_path / "command.json"
    cfg = stack_config(tmp_path, served)
    KINDS[kind](conductor, pytester, cfg, out, up)
    got = json.loads(out.read_text())
    port = got["WEB_PORT"]
    assert port != INHERITED["WEB_PORT"]
    want = expected(port, tmp_path / "logs")
    assert {k: got.get(k) for k in want} == want


@pytest.mark.conductor
def test_a_service_gets_its_layers_in_the_same_order(conductor, inherited, tmp_path):
    served = tmp_path / "service.json"
    cfg = stack_config(tmp_path, served)
    result = conductor.run("run", "--config", str(cfg), "web", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    got = json.loads(served.read_text())
    assert got["FILE_ONLY"] == "file"
    assert got["FILE_VS_INHERITED"] == "inherited"
    assert got["PYTHONUNBUFFERED"] == "1"  # over the env_file's 0: its log lines count
    assert got["SHARED_ONLY"] == "shared"
    assert got["SHARED_VS_OWN"] == "own"  # its own env over the top-level env
    assert got["CONDUCTOR_SERVICE"] == "web"
    assert got["CONDUCTOR_LOGS_DIR"] == str(tmp_path / "logs")
    assert got["WEB_PORT"] == "1"  # a service gets no NAME_* of its own: its env says
    assert "OWN_VS_REQUEST" not in got  # [run].env is COMMAND's


layer_values = st.dictionaries(
    st.sampled_from(list(Layer)),
    st.dictionaries(st.sampled_from("ABCD"), st.text(max_size=3), max_size=4),
)


@given(layer_values)
def test_build_takes_each_value_from_the_last_layer_that_has_it(layers):
    built = environment.build(layers)
    order = list(Layer)
    for key, value in built.values.items():
        having = [layer for layer in order if key in layers.get(layer, {})]
        assert built.sources[key] is having[-1]
        assert value == layers[having[-1]][key]
    assert set(built.values) == {k for values in layers.values() for k in values}
    assert built.added() == {
        k: v for k, v in built.values.items() if built.sources[k] is not Layer.INHERITED
    }


def test_the_readme_table_is_the_order_in_code():
    text = README.read_text()
    table = text[text.index("<!-- environment-order -->") :]
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \|", table, re.M)
    assert [name for _, name in rows[: len(Layer)]] == [layer.value for layer in Layer]
    assert [int(n) for n, _ in rows[: len(Layer)]] == list(range(1, len(Layer) + 1))


# "The one place": nothing but environment.py merges a process's environment.
_ADDRESS_SUFFIXES = {"_HOST", "_PORT", "_URL"}


def _merge(node: ast.AST) -> str | None:
    """What `node` does that only environment.py may do, or None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if node.func.attr == "env" and "mark" in name.lower():
            return "calls the run's mark's env()"
    if isinstance(node, ast.JoinedStr):
        parts = {v.value for v in node.values if isinstance(v, ast.Constant)}
        if parts & _ADDRESS_SUFFIXES:
            return "builds a NAME_HOST/PORT/URL variable"
    if isinstance(node, ast.Dict) and any(
        key is None and ast.unparse(value) == "os.environ"
        for key, value in zip(node.keys, node.values, strict=True)
    ):
        return "unpacks os.environ into an environment"
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.BitOr)
        and "os.environ" in (ast.unparse(node.left), ast.unparse(node.right))
    ):
        return "merges os.environ with |"
    return None


def _merges(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (getattr(node, "lineno", 0), what)
        for node in ast.walk(tree)
        if (what := _merge(node)) is not None
    ]


def test_no_other_module_builds_an_environment():
    offenders = [
        f"{path.name}:{line}: {what}"
        for path in sorted(SOURCE.glob("*.py"))
        if path.name != "environment.py"
        for line, what in _merges(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "code",
    [
        "env = {**os.environ, **extra}",
        "env = os.environ | extra",
        "env = self.mark.env('x')",
        "name = f'{prefix}_URL'",
    ],
)
def test_the_scan_finds_each_kind_of_merge(code):
    assert _merges(ast.parse(code))
