"""Whatever TOML a user writes, load_config() gives a Config or one ConfigError.

Documents are built in the shape of a conductor configuration (real keys, plausible
and implausible values) from nested tables, arrays, strings with NUL bytes, unicode,
`=`, braces and `..`, numbers (NaN, infinities, huge, negative) and booleans. Any other
exception would be a traceback for the user.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conductor.config.loading import Config, load_config
from conductor.errors import ConfigError
from support import toml_key, toml_value

pytestmark = pytest.mark.conductor

READY_KEYS = ["http", "tcp", "log", "cmd", "status", "body"]
NAMES = ["a", "b", "db", "web-1", "a_b", "a-b", "../../x", "café", "Web", "", "a.b", "x\0"]

# Text a user might write, and text that breaks naive handling.
pieces = st.sampled_from(
    [
        "=", "{", "}", "{{", "..", "/", "\n", "é", "ë", "🙂", " ", "$",
        "{port}", "{url}", "{host}", "{python}", "{root}", "{logs_dir}", "{env.HOME}",
        "{env.CONDUCTOR_SURELY_UNSET}", "{services.a.url}", "{services.b.port}",
        "{services.nope.url}", "{env.}", "{ }", "(", "[", "\\u00e9", "*", "SIGTERM",
        "auto", "http://x/", "://", "postgres", "process", "true",
    ]
)  # fmt: skip
texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.lists(pieces, max_size=4).map("".join),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 80, 65535, 65536, 100, 599, 600, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5, 1e9, 1e10]),
)
scalars = st.one_of(texts, numbers, st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(texts, st.sampled_from(READY_KEYS)), inner, max_size=4),
    ),
    max_leaves=12,
)


def one_in(
    n: int, rare: st.SearchStrategy[object], usual: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    """`rare` about once in `n` draws (st.one_of would pick its branches about evenly)."""
    return st.sampled_from([False] * (n - 1) + [True]).flatmap(lambda r: rare if r else usual)


def mostly(plausible: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """A value of the right shape 29 times in 30, anything at all otherwise: a table has
    many keys, and its first wrong one ends the validation."""
    return one_in(30, values, plausible)


def table(
    keys: dict[str, st.SearchStrategy[object]], required: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, object]]:
    """Some of `keys` (all of `required` but rarely) with mostly plausible values, and
    rarely an unknown key."""
    known = st.fixed_dictionaries(
        {k: mostly(v) for k, v in keys.items() if k in required},
        optional={k: mostly(v) for k, v in keys.items() if k not in required},
    )
    unknown = one_in(20, st.dictionaries(texts, values, min_size=1), st.just({}))
    dropped = one_in(20, st.sampled_from(required), st.none()) if required else st.none()
    return st.builds(
        lambda a, b, drop: {k: v for k, v in {**b, **a}.items() if k != drop},
        known,
        unknown,
        dropped,
    )


names = one_in(10, st.one_of(st.sampled_from(NAMES), texts), st.sampled_from(NAMES[:6]))
ready_tables = table(
    {
        "http": st.sampled_from(["/", "/health", "http://127.0.0.1:1/x", "{url}/x"]),
        "tcp": st.just(True),
        "log": texts,
        "cmd": st.lists(texts, max_size=3),
        "status": st.lists(st.integers(min_value=0, max_value=700), max_size=3),
        "body": texts,
    }
)
service_tables = table(
    {
        "command": st.lists(texts, max_size=3).map(lambda args: ["true", *args]),
        "cwd": texts,
        "env": st.dictionaries(texts, texts, max_size=3),
        "port": st.one_of(st.integers(min_value=1, max_value=65535), st.just("auto")),
        "url": texts,
        "depends_on": st.lists(names, max_size=3),
        "ready": ready_tables,
        "ready_timeout": numbers,
        "stop_signal": st.sampled_from(["SIGTERM", "int", "KILL", "SIGNOPE", ""]),
        "stop_timeout": numbers,
        "reuse_existing": st.booleans(),
        "kind": st.sampled_from(["process", "postgres", "task", "docker"]),
        "fail": st.fixed_dictionaries(
            {}, optional={"log": st.one_of(texts, st.lists(texts, max_size=2))}
        ),
        "user": texts,
        "database": texts,
        "password": texts,
        "init": st.lists(texts, max_size=2),
        "settings": st.dictionaries(texts, st.one_of(texts, numbers, st.booleans()), max_size=2),
        "version": st.one_of(st.sampled_from(["15", "16", "x", ""]), numbers),
        "optional": st.booleans(),
    },
    required=("command",),
)
documents = st.builds(
    lambda top, services: {**top, "services": services},
    table(
        {
            "logs_dir": texts,
            "host": st.sampled_from(["127.0.0.1", "localhost", "::1", ""]),
            "env": st.dictionaries(texts, texts, max_size=3),
            "env_file": st.sampled_from([".env", "missing.env", "", "..", "/", [".env", ".env"]]),
            "run": st.fixed_dictionaries(
                {}, optional={"env": st.dictionaries(texts, texts, max_size=2), "cwd": texts}
            ),
            "python": st.one_of(st.sampled_from(["python3", "", "/", "..", "nope"]), texts),
        }
    ),
    mostly(st.dictionaries(names, service_tables, min_size=1, max_size=4)),
)


def to_toml(document: dict[str, object]) -> str:
    return "".join(f"{toml_key(key)} = {toml_value(value)}\n" for key, value in document.items())


# Cases each of which was a traceback once; checked on every run, whatever is drawn.
EXAMPLES: list[tuple[dict[str, object], bool | str]] = [
    ({"services": "x"}, "tool"),  # tool = "x"
    ({"services": {"a": {"command": ["true", "x\0"]}}}, False),
    ({"services": {"a\0": {"command": ["true"]}}}, True),
    ({"services": {"a": {"command": ["true"], "env": {"A=\0": ""}}}}, False),
    ({"services": {"a": {"command": ["true"], "stop_timeout": math.nan}}}, False),
    ({"services": {"a": {"command": ["true"], "ready": {"log": "\\N"}}}}, False),
    ({"services": {"a": {"command": ["true"], "port": 2**63 - 1}}}, False),
    ({"services": {"a": {"command": ["true"], "ready": {"log": "(" * 2000}}}}, False),
]


def with_examples(test: Callable[..., None]) -> Callable[..., None]:
    for document, as_pyproject in EXAMPLES:
        test = example(document=document, as_pyproject=as_pyproject)(test)
    return test


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=documents, as_pyproject=st.sampled_from([False] * 4 + [True] * 3 + ["tool"]))
@with_examples
def test_any_document_gives_a_config_or_a_config_error(tmp_path_factory, document, as_pyproject):
    folder: Path = tmp_path_factory.mktemp("doc")
    if as_pyproject == "tool":  # a pyproject whose `tool` is anything at all
        file, data = folder / "pyproject.toml", {"tool": document.get("services", document)}
    elif as_pyproject:
        file, data = folder / "pyproject.toml", {"tool": {"conductor": document}}
    else:
        file, data = folder / "conductor.toml", document
    file.write_text(to_toml(data), encoding="utf-8")
    (folder / ".env").write_text("A=1\nexport B='x y'\n# comment\nC\n", encoding="utf-8")
    try:
        config = load_config(file)
    except ConfigError as exc:
        error = str(exc)
    else:
        assert isinstance(config, Config)
        assert config.services
        return
    assert "\n" not in error  # one line, whatever the file held
