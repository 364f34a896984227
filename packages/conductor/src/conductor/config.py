"""Reading and validating `[tool.conductor]`: everything that can be wrong in the file is
found here, before a single process starts, and reported as one ConfigError."""

from __future__ import annotations

import os
import signal
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from conductor import templates
from conductor.errors import ConfigError

ReadyKind = Literal["http", "tcp", "log", "cmd", "started"]
ServiceKind = Literal["process", "postgres"]

_TOP_KEYS = {"logs_dir", "host", "services"}
_SERVICE_KEYS = {
    "command",
    "cwd",
    "env",
    "port",
    "url",
    "depends_on",
    "ready",
    "ready_timeout",
    "stop_signal",
    "stop_timeout",
    "reuse_existing",
    "kind",
    "database",
    "password",
    "optional",
}
_READY_KEYS = {"http", "tcp", "log", "cmd", "status"}
_KINDS: tuple[ServiceKind, ...] = ("process", "postgres")
T = TypeVar("T")


@dataclass(frozen=True)
class ReadySpec:
    """How a service proves it is ready: `target` is a path/URL, regex or command."""

    kind: ReadyKind
    target: str | tuple[str, ...] | None = None
    status: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """One service as written in the file; templates are still unfilled."""

    name: str
    command: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | Literal["auto"] | None = None
    url: str | None = None
    depends_on: tuple[str, ...] = ()
    ready: ReadySpec = ReadySpec("started")
    ready_timeout: float = 60.0
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 5.0
    reuse_existing: bool = False
    kind: ServiceKind = "process"
    database: str = "genesis"
    password: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class Config:
    """A whole validated configuration; `services` is in start (dependency) order."""

    file: Path
    root: Path
    logs_dir: Path
    host: str
    services: Mapping[str, ServiceSpec]

    def start_order(self, names: list[str] | None = None) -> list[str]:
        """`names` and everything they depend on, dependencies first (all when None)."""
        if not names:
            return list(self.services)
        unknown = [n for n in names if n not in self.services]
        if unknown:
            known = ", ".join(self.services) or "none"
            raise ConfigError(
                f"unknown service {', '.join(repr(n) for n in unknown)} on the command line "
                f"(known: {known})",
                file=self.file,
            )
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.services[name].depends_on)
        return [n for n in self.services if n in wanted]


def find_config(start: Path | None = None) -> Path:
    """The nearest pyproject.toml, walking up from `start`, that has `[tool.conductor]`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                continue
            if "conductor" in data.get("tool", {}):
                return candidate
    raise ConfigError(
        f"no pyproject.toml with a [tool.conductor] table in {here} or above; "
        "add one or pass --config FILE"
    )


def load_config(path: Path | str | None = None, *, logs_dir: Path | str | None = None) -> Config:
    """Load and validate a configuration; `path` None means find_config()."""
    file = Path(path) if path is not None else find_config()
    file = file.resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found; check the --config path", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({exc})", file=file) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML: {exc}", file=file) from None
    if file.name == "pyproject.toml" or "tool" in data:
        table = data.get("tool", {}).get("conductor")
        if not isinstance(table, dict):
            raise ConfigError("has no [tool.conductor] table", file=file)
        prefix = "tool.conductor."
    else:
        table, prefix = data, ""
    return _parse(table, file, prefix, logs_dir)


def _parse(table: dict[str, Any], file: Path, prefix: str, logs_dir: Path | str | None) -> Config:
    root = file.parent
    _no_unknown_keys(table, _TOP_KEYS, file, None, prefix)
    host = _typed(table.get("host", "127.0.0.1"), str, file, None, f"{prefix}host")
    logs = logs_dir if logs_dir is not None else table.get("logs_dir", "_e2e_logs")
    logs = _typed(str(logs) if isinstance(logs, Path) else logs, str, file, None, "logs_dir")
    raw_services = table.get("services", {})
    if not isinstance(raw_services, dict) or not raw_services:
        raise ConfigError(
            "defines no services; add a [tool.conductor.services.NAME] table",
            file=file,
            key=f"{prefix}services",
        )
    services = {name: _parse_service(name, raw, file) for name, raw in raw_services.items()}
    for spec in services.values():
        for dep in spec.depends_on:
            if dep not in services:
                raise ConfigError(
                    f"depends on unknown service '{dep}' (known: {', '.join(services)})",
                    file=file,
                    service=spec.name,
                    key="depends_on",
                )
        _check_templates(spec, services, file)
    order = _topological(services, file)
    return Config(
        file=file,
        root=root,
        logs_dir=(root / logs).resolve() if not Path(logs).is_absolute() else Path(logs),
        host=host,
        services={name: services[name] for name in order},
    )


def _parse_service(name: str, raw: object, file: Path) -> ServiceSpec:
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, service=name)
    _no_unknown_keys(raw, _SERVICE_KEYS, file, name, "")
    kind = raw.get("kind", "process")
    if kind not in _KINDS:
        raise ConfigError(
            f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}",
            file=file,
            service=name,
            key="kind",
        )
    if kind == "postgres":
        if "command" in raw:
            raise ConfigError(
                "kind 'postgres' builds its own command; remove 'command'",
                file=file,
                service=name,
                key="command",
            )
        command: tuple[str, ...] = ()
    else:
        command = _string_list(raw.get("command"), file, name, "command")
        if not command:
            raise ConfigError(
                'has no command; add command = ["program", "arg", ...]',
                file=file,
                service=name,
                key="command",
            )
    port = raw.get("port", "auto" if kind == "postgres" else None)
    if (
        port is not None
        and port != "auto"
        and not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536)
    ):
        raise ConfigError(
            f'must be an integer from 1 to 65535 or "auto", not {port!r}',
            file=file,
            service=name,
            key="port",
        )
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(
            'must be a table of strings, e.g. env = { KEY = "value" }',
            file=file,
            service=name,
            key="env",
        )
    cwd = raw.get("cwd")
    if cwd is not None:
        _typed(cwd, str, file, name, "cwd")
    url = raw.get("url")
    if url is not None:
        _typed(url, str, file, name, "url")
    depends_on = _string_list(raw.get("depends_on", []), file, name, "depends_on")
    if name in depends_on:
        raise ConfigError("depends on itself", file=file, service=name, key="depends_on")
    ready = _parse_ready(raw.get("ready"), port, file, name)
    if kind == "postgres" and "ready" not in raw:
        ready = ReadySpec("log", "database system is ready to accept connections")
    default_stop = signal.SIGINT if kind == "postgres" else signal.SIGTERM
    return ServiceSpec(
        name=name,
        command=command,
        cwd=cwd,
        env=dict(env),
        port=port,
        url=url,
        depends_on=depends_on,
        ready=ready,
        ready_timeout=_seconds(raw.get("ready_timeout", 60), file, name, "ready_timeout"),
        stop_signal=_signal(raw.get("stop_signal", default_stop.name), file, name),
        stop_timeout=_seconds(raw.get("stop_timeout", 5), file, name, "stop_timeout"),
        reuse_existing=_typed(raw.get("reuse_existing", False), bool, file, name, "reuse_existing"),
        kind=kind,
        database=_typed(raw.get("database", "genesis"), str, file, name, "database"),
        password=_password(raw, kind, file, name),
        optional=_typed(raw.get("optional", False), bool, file, name, "optional"),
    )


def _password(raw: dict[str, object], kind: str, file: Path, name: str) -> str | None:
    """A postgres cluster with a password demands it over TCP (scram-sha-256), like a real
    server does; without one, every connection is trusted."""
    if "password" not in raw:
        return None
    if kind != "postgres":
        raise ConfigError(
            'is only for kind = "postgres"; remove it', file=file, service=name, key="password"
        )
    value = _typed(raw["password"], str, file, name, "password")
    if not value:
        raise ConfigError("must not be empty", file=file, service=name, key="password")
    return value


def _parse_ready(raw: object, port: object, file: Path, name: str) -> ReadySpec:
    if raw is None:
        return ReadySpec("tcp") if port is not None else ReadySpec("started")
    if not isinstance(raw, dict):
        raise ConfigError(
            'must be a table such as { http = "/health" }, { tcp = true }, '
            '{ log = "REGEX" } or { cmd = [...] }',
            file=file,
            service=name,
            key="ready",
        )
    _no_unknown_keys(raw, _READY_KEYS, file, name, "ready.")
    kinds = [k for k in ("http", "tcp", "log", "cmd") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(
            "needs exactly one of http, tcp, log or cmd", file=file, service=name, key="ready"
        )
    kind = kinds[0]
    if "status" in raw and kind != "http":
        raise ConfigError("'status' goes only with http", file=file, service=name, key="ready")
    if (
        kind in ("http", "tcp")
        and port is None
        and not (kind == "http" and "://" in str(raw["http"]))
    ):
        raise ConfigError(
            f'a {kind} probe needs a port; set port = NUMBER or "auto"',
            file=file,
            service=name,
            key=f"ready.{kind}",
        )
    if kind == "tcp":
        if raw["tcp"] is not True:
            raise ConfigError("write tcp = true", file=file, service=name, key="ready.tcp")
        return ReadySpec("tcp")
    if kind == "cmd":
        cmd = _string_list(raw["cmd"], file, name, "ready.cmd")
        if not cmd:
            raise ConfigError("is empty", file=file, service=name, key="ready.cmd")
        return ReadySpec("cmd", cmd)
    target = _typed(raw[kind], str, file, name, f"ready.{kind}")
    if kind == "log":
        import re

        try:
            re.compile(target)
        except re.error as exc:
            raise ConfigError(
                f"is not a valid regular expression: {exc}",
                file=file,
                service=name,
                key="ready.log",
            ) from None
        return ReadySpec("log", target)
    status = None
    if "status" in raw:
        values = raw["status"]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, int) and 100 <= v < 600 for v in values)
        ):
            raise ConfigError(
                "must be a list of HTTP status codes, e.g. [200, 204]",
                file=file,
                service=name,
                key="ready.status",
            )
        status = tuple(values)
    return ReadySpec("http", target, status)


def _check_templates(spec: ServiceSpec, services: Mapping[str, ServiceSpec], file: Path) -> None:
    places: list[tuple[str, str]] = [(f"command[{i}]", arg) for i, arg in enumerate(spec.command)]
    places += [(f"env.{k}", v) for k, v in spec.env.items()]
    if spec.cwd is not None:
        places.append(("cwd", spec.cwd))
    if spec.url is not None:
        places.append(("url", spec.url))
    if spec.ready.kind == "cmd" and isinstance(spec.ready.target, tuple):
        places += [(f"ready.cmd[{i}]", arg) for i, arg in enumerate(spec.ready.target)]
    if spec.ready.kind == "http" and isinstance(spec.ready.target, str):
        places.append(("ready.http", spec.ready.target))
    for key, template in places:
        try:
            for name in templates.fields(template):
                templates.check_name(name, services)
                if name == "port" and spec.port is None:
                    raise templates.TemplateError("uses {port} but the service has no port")
                if name == "url" and (key == "url" or (spec.port is None and spec.url is None)):
                    raise templates.TemplateError(
                        "uses {url} but the service has no url"
                        if key != "url"
                        else "a url cannot use {url}"
                    )
                if key == "url" and name.startswith("services.") and name.endswith(".url"):
                    raise templates.TemplateError(
                        "a url may use other services' host and port only"
                    )
                if name.startswith("env.") and name[4:] not in os.environ:
                    raise templates.TemplateError(
                        f"uses '{{{name}}}' but environment variable {name[4:]} is not set"
                    )
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), file=file, service=spec.name, key=key) from None


def _topological(services: Mapping[str, ServiceSpec], file: Path) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise ConfigError(
                f"dependency cycle: {' -> '.join(cycle)}; remove one of these depends_on entries",
                file=file,
                service=name,
                key="depends_on",
            )
        state[name] = 1
        for dep in services[name].depends_on:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in services:
        visit(name, [])
    return order


def _no_unknown_keys(
    table: Mapping[str, object], allowed: set[str], file: Path, service: str | None, prefix: str
) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown key; allowed keys are {', '.join(sorted(allowed))}",
                file=file,
                service=service,
                key=prefix + key,
            )


def _typed(value: object, kind: type[T], file: Path, service: str | None, key: str) -> T:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"must be {'true or false' if kind is bool else 'a ' + kind.__name__}, not {value!r}",
            file=file,
            service=service,
            key=key,
        )
    return value


def _string_list(value: object, file: Path, service: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            "must be a list of strings (commands are argument lists, never shell strings)",
            file=file,
            service=service,
            key=key,
        )
    return tuple(value)


def _seconds(value: object, file: Path, service: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"must be a positive number of seconds, not {value!r}",
            file=file,
            service=service,
            key=key,
        )
    return float(value)


def _signal(value: object, file: Path, service: str) -> signal.Signals:
    name = value if isinstance(value, str) else ""
    name = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
    try:
        return signal.Signals[name]
    except KeyError:
        raise ConfigError(
            f"unknown signal {value!r}; use a name such as SIGTERM or SIGINT",
            file=file,
            service=service,
            key="stop_signal",
        ) from None
