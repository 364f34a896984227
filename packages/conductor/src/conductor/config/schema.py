"""The shape of `[tool.conductor]`: one typed structure per table.

Types, defaults and simple bounds are declared on the fields (msgspec checks them); each
field also says, in words, what it must be. Rules that tie several keys of one table
together live in that table's `__post_init__` and raise `Invalid`. `convert()` is the one
place that turns any of these failures into a ConfigError naming file, service and key.

Adding a key is adding a field (and, if it depends on other keys, a line in
`__post_init__`); the error messages follow from the declaration.
"""

from __future__ import annotations

import re
import signal
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct, field
from msgspec.structs import force_setattr, replace

from conductor.errors import ConfigError

S = TypeVar("S", bound=Struct)

ReadyKind = Literal["http", "tcp", "log", "cmd", "started"]
ServiceKind = Literal["process", "postgres", "task", "container"]
EngineName = Literal["podman", "docker"]
PullPolicy = Literal["missing", "never", "always"]


def expect(what: str) -> Meta:
    """What a field must be, in words; the error message says 'must be <what>'."""
    return Meta(description=what)


Text = Annotated[str, expect("a string")]
Flag = Annotated[bool, expect("true or false")]
# A bound, so that NaN and infinity are refused (msgspec takes no infinite bound): ~31
# years is no timeout anyone means, and every deadline stays a finite number.
MAX_SECONDS = 1e9
SECONDS = "a positive, finite number of seconds"
Seconds = Annotated[float, Meta(gt=0, le=MAX_SECONDS, description=SECONDS)]
Args = Annotated[
    tuple[str, ...],
    expect("a list of strings (commands are argument lists, never shell strings)"),
]
Names = Annotated[tuple[str, ...], expect("a list of service names")]
# NUL bytes anywhere (values and keys) are refused once, by convert(); variable names
# (not empty, no '=') by check_env() in the tables that hold an env.
Env = Annotated[dict[str, str], expect('a table of strings, e.g. env = { KEY = "value" }')]
EnvFiles = Annotated[
    str | tuple[str, ...], expect('a path or a list of paths of .env files, e.g. ".env"')
]
Port = Annotated[
    Annotated[int, Meta(ge=1, le=65535)] | Literal["auto"],
    expect('an integer from 1 to 65535 or "auto"'),
]
Setting = Annotated[
    str | int | float | bool,
    expect('a string, number or true/false, e.g. max_connections = "200"'),
]
Settings = Annotated[
    dict[str, Setting],
    expect('a table of server settings, e.g. settings = { max_connections = "200" }'),
]
Version = Annotated[str | int, expect('a major version such as "15"')]
Regexes = Annotated[
    str | tuple[str, ...],
    expect('a regular expression or a list of them, e.g. log = "FATAL"'),
]
Status = Annotated[
    tuple[Annotated[int, Meta(ge=100, le=599)], ...],
    Meta(min_length=1, description="a list of HTTP status codes, e.g. [200, 204]"),
]


def env_name(service: str) -> str:
    """`NAME` in NAME_HOST/NAME_PORT/NAME_URL: upper case, other characters as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", service.upper())


def is_seconds(value: float) -> bool:
    """The rule of `Seconds`, for numbers that come from elsewhere (--timeout)."""
    return 0 < value <= MAX_SECONDS  # False for NaN


RUNS_TO_KEEP = "a whole number of runs to keep, 0 or more (0 keeps none)"
RunsToKeep = Annotated[
    int,
    Meta(
        ge=0,
        description="a whole number of runs to keep, 0 or more (0 keeps none; e.g. keep_logs = 5)",
    ),
]


def is_runs_to_keep(value: object) -> bool:
    """The rule of `RunsToKeep`, for values that come from elsewhere (--keep-logs)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Invalid(ValueError):
    """A rule across keys of one table is broken; `key` is relative to that table."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _check_regex(pattern: str, key: str) -> None:
    try:
        re.compile(pattern.encode())  # as the log probe compiles it: it matches bytes
    except (re.error, OverflowError, RecursionError) as exc:
        raise Invalid(key, f"is not a valid regular expression for a log's bytes: {exc}") from None


def env_problem(name: str, value: str) -> str | None:
    """Why NAME=VALUE cannot be in a process environment, or None when it can."""
    if not name:
        return "a variable name cannot be empty"
    if "=" in name:
        return "a variable name cannot contain '=' (it separates name and value)"
    if "\0" in name or "\0" in value:
        return "contains a NUL byte, which no environment variable can hold"
    return None


def check_env(env: Mapping[str, str], key: str) -> None:
    for name, value in env.items():
        problem = env_problem(name, value)
        if problem is not None:
            raise Invalid(f"{key}.{name}", problem)


def _signal_name(value: str | None, kind: str) -> str:
    if value is None:
        return "SIGINT" if kind == "postgres" else "SIGTERM"
    name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
    if name not in signal.Signals.__members__:
        raise Invalid(
            "stop_signal", f"unknown signal {value!r}; use a name such as SIGTERM or SIGINT"
        )
    return name


class ReadySpec(Struct, frozen=True, forbid_unknown_fields=True):
    """`ready = {...}`: how a service proves it is ready. No probe at all is "started"."""

    http: Annotated[str, expect("a path such as /health, or a URL")] | None = None
    tcp: Annotated[Literal[True], expect("true (write tcp = true)")] | None = None
    log: Annotated[str, expect("a regular expression")] | None = None
    cmd: (
        Annotated[
            Args, Meta(min_length=1, description="a non-empty list: a program and its arguments")
        ]
        | None
    ) = None
    status: Status | None = None
    body: Annotated[str, expect("a regular expression")] | None = None

    PROBES: ClassVar[tuple[str, ...]] = ("http", "tcp", "log", "cmd")

    def __post_init__(self) -> None:
        for key in ("status", "body"):
            if getattr(self, key) is not None and self.http is None:
                raise Invalid(key, f"'{key}' goes only with http")
        if self.log is not None:
            _check_regex(self.log, "log")
        if self.body is not None:
            _check_regex(self.body, "body")

    @property
    def probes(self) -> list[str]:
        """The probes this table names (a written table must name exactly one)."""
        return [name for name in self.PROBES if getattr(self, name) is not None]

    @property
    def kind(self) -> ReadyKind:
        probes = self.probes
        return typing.cast(ReadyKind, probes[0]) if probes else "started"

    @property
    def target(self) -> str | tuple[str, ...] | None:
        """The path or URL, regex or command of the probe (None for tcp and started)."""
        for value in (self.http, self.log, self.cmd):
            if value is not None:
                return value
        return None

    def templated(self) -> Iterator[tuple[str, str]]:
        """(key, template) for each value of this table that templates fill."""
        if self.http is not None:
            yield "ready.http", self.http
        for i, arg in enumerate(self.cmd or ()):
            yield f"ready.cmd[{i}]", arg

    def filled(self, fill: Callable[[str, str], str]) -> ReadySpec:
        """This probe with its templates filled by `fill(template, key)`."""
        return replace(
            self,
            http=None if self.http is None else fill(self.http, "ready.http"),
            cmd=None
            if self.cmd is None
            else tuple(fill(a, f"ready.cmd[{i}]") for i, a in enumerate(self.cmd)),
        )


class FailSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """`fail = { log = "REGEX" }`: output that means the service is broken for good (a
    wrong password, a missing table), so the run fails at once instead of waiting out
    ready_timeout or running the tests against it."""

    log: Regexes = ()

    def __post_init__(self) -> None:
        patterns = (self.log,) if isinstance(self.log, str) else self.log
        for i, pattern in enumerate(patterns):
            _check_regex(pattern, "log" if isinstance(self.log, str) else f"log[{i}]")
        force_setattr(self, "log", patterns)

    @property
    def patterns(self) -> tuple[str, ...]:
        """Every regex, however it was written (one string or a list)."""
        return (self.log,) if isinstance(self.log, str) else self.log


_POSTGRES_READY = ReadySpec(log="database system is ready to accept connections")
_UNWRITTEN = ReadySpec()  # the default of `ready`, told from a written one by identity


class ServiceSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """`[services.NAME]`: one service as written in the file; templates still unfilled.

    Defaults that depend on `kind` or on other keys are settled in __post_init__, so
    after construction every field holds what the service will really use."""

    command: Args = ()
    cwd: Text | None = None
    env: Env = {}
    port: Port | None = None
    url: Text | None = None
    depends_on: Names = ()
    ready: Annotated[
        ReadySpec,
        expect(
            'a table such as { http = "/health" }, { tcp = true }, { log = "REGEX" } '
            "or { cmd = [...] }"
        ),
    ] = _UNWRITTEN
    ready_timeout: Seconds = 60.0
    fail: Annotated[FailSpec, expect('a table such as { log = "REGEX" }')] = FailSpec()
    stop_signal_name: Annotated[str, expect("a signal name such as SIGTERM or SIGINT")] | None = (
        field(default=None, name="stop_signal")
    )
    stop_timeout: Seconds = 5.0
    reuse_existing: Flag = False
    kind: Annotated[ServiceKind, expect('one of "process", "postgres", "task", "container"')] = (
        "process"
    )
    user: Text | None = None
    password: Text | None = None
    database: Text | None = None
    init: Annotated[tuple[str, ...], expect("a list of SQL file paths")] = ()
    settings: Settings = {}
    version: Version | None = None
    optional: Flag = False
    env_file: EnvFiles = ()
    image: (
        Annotated[str, Meta(min_length=1, description='an image name such as "redis:7"')] | None
    ) = None
    container_port: (
        Annotated[int, Meta(ge=1, le=65535), expect("an integer from 1 to 65535")] | None
    ) = None
    engine: Annotated[EngineName, expect('"podman" or "docker"')] | None = None
    options: Annotated[
        tuple[str, ...],
        expect('a list of arguments for the engine\'s run, e.g. ["--shm-size", "256m"]'),
    ] = ()
    pull: Annotated[PullPolicy, expect('one of "missing", "never", "always"')] | None = None

    # Keys that only one kind of service may have.
    ONLY_FOR: ClassVar[Mapping[str, str]] = {
        **{
            key: "postgres"
            for key in ("user", "password", "database", "init", "settings", "version")
        },
        **{key: "container" for key in ("image", "container_port", "engine", "options", "pull")},
    }

    # Keys a task may not have: it runs to its end and serves nothing.
    NOT_FOR_TASK: ClassVar[tuple[str, ...]] = ("port", "url", "reuse_existing")

    def __post_init__(self) -> None:
        check_env(self.env, "env")
        if self.kind == "task":
            self._settle_task()
        for key, kind in self.ONLY_FOR.items():
            if getattr(self, key) not in (None, (), {}) and self.kind != kind:
                raise Invalid(key, f'is only for kind = "{kind}"; remove it')
        if self.kind == "postgres":
            self._settle_postgres()
        elif self.kind == "container":
            self._settle_container()
        elif not self.command:
            raise Invalid("command", 'has no command; add command = ["program", "arg", ...]')
        if self.password == "":
            raise Invalid("password", "must not be empty")
        force_setattr(self, "stop_signal_name", _signal_name(self.stop_signal_name, self.kind))
        force_setattr(self, "ready", self._settle_ready())

    def _settle_task(self) -> None:
        for key in self.NOT_FOR_TASK:
            if getattr(self, key) not in (None, False):
                raise Invalid(
                    key, 'a kind = "task" runs to completion and serves nothing; remove it'
                )
        if self.ready is not _UNWRITTEN:
            raise Invalid(
                "ready",
                'a kind = "task" is ready when it exits 0; remove it '
                "(ready_timeout is the time it may take)",
            )

    def _settle_postgres(self) -> None:
        if self.command:
            raise Invalid("command", "kind 'postgres' builds its own command; remove 'command'")
        if self.port is None:
            force_setattr(self, "port", "auto")
        force_setattr(self, "user", "postgres" if self.user is None else self.user)
        force_setattr(self, "database", "postgres" if self.database is None else self.database)
        for key in ("user", "database"):
            if not getattr(self, key):
                raise Invalid(key, "must not be empty")
        for i, path in enumerate(self.init):
            if not path:
                raise Invalid(f"init[{i}]", "must be the path of an SQL file, not empty")
        for name in self.settings:
            if not _SETTING_NAME.fullmatch(name):
                raise Invalid(f"settings.{name}", "is not a server setting name")
        if self.version is not None:
            version = str(self.version)
            if not version.isdigit():
                raise Invalid("version", f'must be a major version such as "15", not {version!r}')
            force_setattr(self, "version", version)

    def _settle_container(self) -> None:
        """An image is required; `command` (optional) replaces its CMD. The host port and
        the port inside are published together, so one without the other is refused."""
        if self.image is None:
            raise Invalid("image", 'is required for kind = "container"; add image = "NAME:TAG"')
        if self.container_port is not None and self.port is None:
            raise Invalid(
                "container_port",
                'needs port, the host port it is published on; add port = "auto" or a number',
            )
        if self.port is not None and self.container_port is None:
            raise Invalid(
                "port",
                "a container's port is published from container_port; add container_port = "
                "the port the image listens on",
            )
        if self.cwd is not None:
            raise Invalid("cwd", "a container runs in its image's working directory; remove it")
        force_setattr(self, "pull", "missing" if self.pull is None else self.pull)

    def _settle_ready(self) -> ReadySpec:
        """A port and no `ready`: tcp; neither: ready once started."""
        if self.ready is _UNWRITTEN:
            if self.kind == "postgres":
                return _POSTGRES_READY
            return ReadySpec(tcp=True) if self.port is not None else ReadySpec()
        if len(self.ready.probes) != 1:
            raise Invalid("ready", "needs exactly one of http, tcp, log or cmd")
        kind = self.ready.kind
        absolute = kind == "http" and "://" in str(self.ready.http)
        if kind in ("http", "tcp") and self.port is None and not absolute:
            raise Invalid(
                f"ready.{kind}", f'a {kind} probe needs a port; set port = NUMBER or "auto"'
            )
        return self.ready

    @property
    def stop_signal(self) -> signal.Signals:
        return signal.Signals[self.stop_signal_name or "SIGTERM"]

    def templated(self) -> Iterator[tuple[str, str]]:
        """(key, template) for each value of this service that templates fill."""
        for i, arg in enumerate(self.command):
            yield f"command[{i}]", arg
        for key, value in self.env.items():
            yield f"env.{key}", value
        if self.cwd is not None:
            yield "cwd", self.cwd
        if self.url is not None:
            yield "url", self.url
        for key in ("user", "password", "database"):
            value = getattr(self, key)
            if value is not None:
                yield key, value
        yield from self.ready.templated()


class RunSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """`[run]`: the run's own settings (COMMAND's env and cwd, how many runs to keep), so
    `conductor run -- pytest` needs no flags."""

    env: Env = {}
    cwd: Text | None = None
    # Keep this many runs' files in runs/ of the logs folder (--keep-logs); None: none
    # are kept and runs/ is never looked at.
    keep_logs: RunsToKeep | None = None

    def __post_init__(self) -> None:
        check_env(self.env, "env")


class Document(Struct, frozen=True, forbid_unknown_fields=True):
    """`[tool.conductor]` (or a standalone file's top level). Each service is converted
    on its own, so that its errors name it."""

    logs_dir: Text = "_e2e_logs"
    host: Text = "127.0.0.1"
    env_file: EnvFiles = ()
    env: Env = {}
    run: Annotated[RunSpec, expect('a table such as { env = { KEY = "value" }, cwd = "." }')] = (
        RunSpec()
    )
    python: Text | None = None
    services: Annotated[
        dict[str, Any], expect("a table of services, [tool.conductor.services.NAME]")
    ] = {}

    APART: ClassVar[frozenset[str]] = frozenset({"services"})  # converted one by one

    def __post_init__(self) -> None:
        check_env(self.env, "env")


# The one place a validation failure becomes a message ------------------------------------


def convert(
    raw: object,
    cls: type[S],
    *,
    file: Path,
    service: str | None = None,
    prefix: str = "",
) -> S:
    """`raw` (a TOML table) as a `cls`, or ConfigError naming file, service and key."""
    nul = _find_nul(raw, cls.APART if issubclass(cls, Document) else ())
    if nul is not None:
        raise ConfigError(
            "contains a NUL byte, which no program argument, path or environment variable "
            "can hold; remove it",
            file=file,
            service=service,
            key=prefix + nul,
        )
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        key, message = _explain(exc, raw, cls)
        raise ConfigError(
            message, file=file, service=service, key=prefix + key if key else None
        ) from None


def _find_nul(value: object, apart: Collection[str] = (), key: str = "") -> str | None:
    """The key of the first string or table key holding a NUL byte, else None. Tables
    in `apart` are left to their own convert(), so that their errors name them."""
    if isinstance(value, str):
        return key if "\0" in value else None
    children: list[tuple[str, object, bool]]
    if isinstance(value, dict):
        children = [(f"{key}.{k}" if key else str(k), v, k in apart) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{key}[{i}]", v, False) for i, v in enumerate(value)]
    else:
        return None
    for where, item, skip in children:
        found = where if "\0" in where else (None if skip else _find_nul(item, (), where))
        if found is not None:
            return found
    return None


# "- at `$.env`", or for a table's key "- at `key` in `$.env`".
_AT = re.compile(r"(?s)(?P<what>.*?)(?: - at `(?:key` in `)?\$(?P<path>[^`]*)`)?")
_STEP = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")
_FIELD_NAMED = re.compile(r"Object (?P<how>contains unknown|missing required) field `(?P<name>.*)`")


def _explain(exc: msgspec.ValidationError, raw: object, cls: type[Struct]) -> tuple[str, str]:
    """(key, message) for a failure: msgspec's own (type, bound, unknown or missing key)
    in the words the field declares, or a table rule's Invalid as it was raised."""
    match = _AT.fullmatch(str(exc))
    assert match is not None
    keys, value = _walk(raw, match.group("path") or "")
    struct, expected = _describe(cls, keys)
    cause = exc.__cause__
    if isinstance(cause, Invalid):
        return ".".join([*keys, *([cause.key] if cause.key else [])]), cause.message
    named = _FIELD_NAMED.fullmatch(match.group("what"))
    if named and named.group("how") == "contains unknown":
        allowed = ", ".join(sorted(struct.__struct_encode_fields__)) if struct else ""
        return ".".join([*keys, named.group("name")]), f"unknown key; allowed keys are {allowed}"
    if named:
        return ".".join([*keys, named.group("name")]), "is required"
    if not keys:
        return "", "must be a table"
    return ".".join(keys), f"must be {expected or 'something else'}, not {_show(value)}"


def _walk(raw: object, path: str) -> tuple[list[str], object]:
    """The table keys on `path` up to its first list index, and the value found there."""
    keys: list[str] = []
    value = raw
    for step in _STEP.finditer(path):
        if step.group(1) is None or not isinstance(value, dict):
            break
        keys.append(step.group(1))
        value = value.get(step.group(1))
    return keys, value


def _describe(cls: type[Struct], keys: list[str]) -> tuple[type[Struct] | None, str | None]:
    """The table type at the end of `keys`, and the words of the last field on the way."""
    hint: object = cls
    expected: str | None = None
    for key in keys:
        struct = _struct_in(hint)
        if struct is None:
            return None, expected
        names = dict(zip(struct.__struct_encode_fields__, struct.__struct_fields__, strict=True))
        if key not in names:
            return None, expected
        hint = typing.get_type_hints(struct, include_extras=True)[names[key]]
        expected = _words(hint) or expected
    return _struct_in(hint), expected


def _struct_in(hint: object) -> type[Struct] | None:
    if isinstance(hint, type) and issubclass(hint, Struct):
        return hint
    for arg in typing.get_args(hint):
        found = _struct_in(arg)
        if found is not None:
            return found
    return None


def _words(hint: object) -> str | None:
    """The outermost `expect()` words on a field's type (nested Annotated flatten
    outermost last)."""
    for arg in (hint, *typing.get_args(hint)):
        words = [m.description for m in getattr(arg, "__metadata__", ()) if isinstance(m, Meta)]
        if any(words):
            return [w for w in words if w][-1]
    return None


def _show(value: object, limit: int = 60) -> str:
    """A value as TOML writes it, cut to fit on the error's one line."""
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
