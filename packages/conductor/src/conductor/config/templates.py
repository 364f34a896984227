"""`{name}` placeholders in commands, env values, cwd, urls and COMMAND's `--env`.

The one place templates are checked and filled. Names are checked when the
configuration is loaded (`check`), so a typo ends the run before anything starts;
values are filled (`Context`) only once every port is settled.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conductor.errors import ConfigError

_SERVICE_ATTRS = ("host", "port", "url")
POSTGRES_ATTRS = ("user", "password", "database", "socket_dir")  # kind = "postgres" only
SIMPLE_NAMES = ("python", "root", "host", "port", "url", "logs_dir")


class TemplateError(ValueError):
    """A placeholder that cannot be filled; the message says which and why, and `key`
    which variable it was in, when it was one of several (render_env)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@contextlib.contextmanager
def config_error(
    *,
    file: Path | str | None = None,
    service: str | None = None,
    key: str | None = None,
    table: str | None = None,
) -> Iterator[None]:
    """The one way a template that cannot be checked or filled becomes bad configuration:
    a ConfigError naming the file, the service and the key. `key` is the template's own
    key; `table` instead is the prefix of a table of them (`env.`, `--env `), which the
    error's own key (the variable, from render_env) completes."""
    try:
        yield
    except TemplateError as exc:
        where = key if table is None else f"{table}{exc.key}"
        raise ConfigError(str(exc), file=file, service=service, key=where) from None


def fields(template: str) -> Iterator[str]:
    """The placeholder names in `template`, in order, those nested in an `{env...}`
    default or message after the one they are in (escaped braces are skipped).
    TemplateError when its braces do not pair up."""
    yield from _names(parse(template))


# {env.NAME}, {env.NAME:-default} (unset or empty: the default), {env.NAME:?message}
# (unset or empty: the run ends with the message), as in docker compose and the shell.
# The default and the message are templates themselves: `{env.X:-{env.Y}}` is compose's
# `${X:-${Y}}`.
_ENV = re.compile(r"env\.(?P<var>[^.:{}]+)(?::(?P<op>[-?])(?P<arg>.*))?", re.DOTALL)
_BRACE = re.compile(r"[{}]")
MAX_NESTING = 16  # placeholders inside placeholders, at most this deep


@dataclass(frozen=True)
class EnvRef:
    """A parsed `{env...}` placeholder; `arg`, its default or message, parsed."""

    var: str
    op: str | None  # "-", "?" or None
    arg: tuple[Node, ...]


@dataclass(frozen=True)
class Field:
    """A placeholder: its name as written (stripped), and what it means when it is an
    `{env...}` one."""

    name: str
    env: EnvRef | None


Node = str | Field  # literal text (escapes already undone), or a placeholder


@functools.lru_cache(maxsize=4096)
def parse(template: str) -> tuple[Node, ...]:
    """`template` as text and placeholders. `{{` and `}}` are literal braces; inside a
    placeholder braces nest (`{env.X:-{env.Y}}`), so a default's own braces must pair.
    TemplateError for a lone `}`, an unclosed `{` or nesting past MAX_NESTING."""
    nodes: list[Node] = []
    text: list[str] = []
    at = 0
    while (brace := _BRACE.search(template, at)) is not None:
        text.append(template[at : brace.start()])
        at = brace.start()
        if template.startswith(("{{", "}}"), at):
            text.append(template[at])
            at += 2
            continue
        if template[at] == "}":
            raise TemplateError("has a lone '}' (write '}}' for a literal brace)")
        end = _closing(template, at)
        if any(text):
            nodes.append("".join(text))
        text = []
        nodes.append(_field(template[at + 1 : end]))
        at = end + 1
    text.append(template[at:])
    if any(text):
        nodes.append("".join(text))
    return tuple(nodes)


def _closing(template: str, start: int) -> int:
    """Where the placeholder opened at `start` closes: its matching `}`."""
    depth = 0
    for brace in _BRACE.finditer(template, start):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return brace.start()
        if depth > MAX_NESTING:
            raise TemplateError(f"nests placeholders more than {MAX_NESTING} deep")
    raise TemplateError("has an unclosed '{' (write '{{' for a literal brace)")


def _field(body: str) -> Field:
    name = body.strip()
    match = _ENV.fullmatch(name)
    if match is None:
        return Field(name, None)
    return Field(name, EnvRef(match["var"], match["op"], parse(match["arg"] or "")))


def env_names(template: str) -> Iterator[str]:
    """The environment variables `template` reads (`{env.X:-{env.Y}}`: X, then Y), by
    the parse that fills it; TemplateError when its braces do not pair up."""
    yield from _env_names(parse(template))


def _env_names(nodes: tuple[Node, ...]) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, Field) and node.env is not None:
            yield node.env.var
            yield from _env_names(node.env.arg)


def _names(nodes: tuple[Node, ...]) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, Field):
            yield node.name
            if node.env is not None:
                yield from _names(node.env.arg)


def _fill(
    nodes: tuple[Node, ...], environ: Mapping[str, str], value_of: Callable[[str], str]
) -> str:
    """`nodes` filled: `{env...}` from `environ` (a default or message only when it is
    needed, so its own variables need not be set otherwise), any other placeholder by
    `value_of`. TemplateError when one cannot be filled."""
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
            continue
        ref = node.env
        if ref is None:
            out.append(value_of(node.name))
            continue
        found = environ.get(ref.var)
        if ref.op == "-":
            out.append(found or _fill(ref.arg, environ, value_of))
        elif ref.op == "?" and not found:
            message = _fill(ref.arg, environ, value_of).strip()
            raise TemplateError(message or f"environment variable {ref.var} is not set or empty")
        elif found is None:
            raise TemplateError(
                f"uses '{{env.{ref.var}}}' but environment variable {ref.var} is not set; "
                f"set it, or give a default: {{env.{ref.var}:-DEFAULT}}"
            )
        else:
            out.append(found)
    return "".join(out)


def check_name(name: str, services: Collection[str], postgres: Collection[str] = ()) -> None:
    """Raise TemplateError unless `name` is one conductor knows how to fill; `postgres`
    are the services of kind "postgres", which offer POSTGRES_ATTRS too."""
    if name in SIMPLE_NAMES or _ENV.fullmatch(name) is not None:
        return
    parts = name.split(".")
    if parts[0] == "services" and len(parts) == 3:
        service, attr = parts[1], parts[2]
        if service not in services:
            known = ", ".join(sorted(services)) or "none"
            raise TemplateError(f"'{{{name}}}' names unknown service '{service}' (known: {known})")
        offered = _SERVICE_ATTRS + (POSTGRES_ATTRS if service in postgres else ())
        if attr not in offered:
            more = "" if service in postgres or attr not in POSTGRES_ATTRS else " (kind postgres)"
            raise TemplateError(
                f"'{{{name}}}': service '{service}' offers only {', '.join(offered)}, "
                f"not '{attr}'{more}"
            )
        return
    raise TemplateError(
        f"unknown placeholder '{{{name}}}'; known: {{python}}, {{root}}, {{host}}, {{port}}, "
        "{url}, {logs_dir}, {env.NAME} (also {env.NAME:-default} and {env.NAME:?message}), "
        "{services.NAME.host|port|url}, and for kind "
        "postgres {services.NAME.user|password|database|socket_dir}"
    )


Owner = Literal["service", "url", "identity", "command"]


@dataclass(frozen=True)
class Scope:
    """What a template may name where it stands: `owner` is "service" (a service's own
    value), "url" (a service's url, which others' urls are made from), "identity" (a
    postgres user, password or database, which its url is made from) or "command"
    (COMMAND's --env, which belongs to no service)."""

    services: Collection[str]
    environ: Mapping[str, str]
    port: bool = False  # the owning service has a port
    url: bool = False  # the owning service has a url
    owner: Owner = "service"
    postgres: Collection[str] = ()  # services of kind "postgres"


def check(template: str, scope: Scope) -> None:
    """Raise TemplateError unless every placeholder of `template` can be filled in `scope`:
    every name is known and allowed where it stands (in a default too), and every
    `{env...}` has a value (its default's, when it needs one)."""
    nodes = parse(template)
    for name in _names(nodes):
        check_name(name, scope.services, scope.postgres)
        _check_owner(name, scope)
    _fill(nodes, scope.environ, lambda name: "")  # the run's own values come later


def _check_owner(name: str, scope: Scope) -> None:
    if scope.owner == "identity" and (name in ("port", "url") or name.startswith("services.")):
        raise TemplateError(
            f"'{{{name}}}': user, password and database may use {{env.NAME}} and the run's "
            "own values ({root}, {logs_dir}, ...), not a service's"
        )
    if name in ("port", "url") and scope.owner == "command":
        raise TemplateError(f"'{{{name}}}' belongs to a service; use {{services.NAME.{name}}}")
    if name == "port" and not scope.port:
        raise TemplateError("uses {port} but the service has no port")
    if name == "url" and scope.owner == "url":
        raise TemplateError("a url cannot use {url}")
    if name == "url" and not scope.url:
        raise TemplateError("uses {url} but the service has no url")
    if scope.owner == "url" and name.startswith("services.") and name.endswith(".url"):
        raise TemplateError("a url may use other services' host and port only")


def referenced_services(template: str) -> set[str]:
    """Services whose address a template uses."""
    found = set()
    for name in fields(template):
        parts = name.split(".")
        if parts[0] == "services" and len(parts) == 3:
            found.add(parts[1])
    return found


def render(template: str, context: Mapping[str, str]) -> str:
    """Fill every placeholder from `context`; a missing one raises TemplateError."""

    def value_of(name: str) -> str:
        try:
            return context[name]
        except KeyError:
            raise TemplateError(f"'{{{name}}}' has no value here") from None

    return _fill(parse(template), _Environ(context), value_of)


class _Environ(Mapping[str, str]):
    """The `env.NAME` entries of a render context, seen as an environment."""

    def __init__(self, context: Mapping[str, str]) -> None:
        self.context = context

    def __getitem__(self, key: str) -> str:
        return self.context["env." + key]

    def __iter__(self) -> Iterator[str]:
        return (k[4:] for k in self.context if k.startswith("env."))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Context:
    """The values templates of one run are filled from: the run's own ({python},
    {root}, {host}, {logs_dir}, {env.NAME}) and each planned service's address."""

    def __init__(
        self,
        *,
        root: Path,
        host: str,
        logs_dir: Path,
        environ: Mapping[str, str],
        python: str | None = None,
    ) -> None:
        self.values: dict[str, str] = {
            "python": python or sys.executable,
            "root": str(root),
            "logs_dir": str(logs_dir),
            "host": host,
            **{f"env.{k}": v for k, v in environ.items()},
        }
        self.skipped: dict[str, str] = {}
        # services of the configuration this run does not select: name -> the selection
        self.outside: dict[str, str] = {}
        # environment entries left out because they name a service that will not run:
        # "TABLE.KEY" -> why (what `conductor check` lists)
        self.left_out: dict[str, str] = {}

    def add_service(self, name: str, *, host: str, port: int | None, url: str | None) -> None:
        """Make {services.NAME.host|port|url} available (port and url once known)."""
        self.values[f"services.{name}.host"] = host
        if port is not None:
            self.values[f"services.{name}.port"] = str(port)
        if url is not None:
            self.values[f"services.{name}.url"] = url

    def add_postgres(
        self, name: str, *, user: str, password: str | None, database: str, socket_dir: Path
    ) -> None:
        """Make {services.NAME.user|password|database|socket_dir} available."""
        self.values[f"services.{name}.user"] = user
        self.values[f"services.{name}.password"] = password or ""
        self.values[f"services.{name}.database"] = database
        self.values[f"services.{name}.socket_dir"] = str(socket_dir)

    def skip(self, name: str, reason: str) -> None:
        """An optional service that will not run: naming it is an error, except in an
        environment variable, which is then left out."""
        self.skipped[name] = reason

    def leave_out(self, names: Collection[str], selection: Collection[str]) -> None:
        """Services this run does not select (a subset run): naming one is an error,
        except in an environment variable, which is then left out."""
        chosen = ", ".join(selection) or "none"
        for name in names:
            self.outside[name] = chosen

    def why_not(self, name: str) -> str | None:
        """Why service `name` has no address in this run, if it has none."""
        if name in self.skipped:
            return f"optional service '{name}' is skipped ({self.skipped[name]})"
        if name in self.outside:
            return f"'{name}' is not part of this run (services: {self.outside[name]})"
        return None

    def render(self, template: str, *, port: int | None = None, url: str | None = None) -> str:
        """`template` filled; `port` and `url` are the owning service's {port} and {url}."""
        for name in sorted(referenced_services(template)):
            why = self.why_not(name)
            if why is not None:
                raise TemplateError(f"uses {{services.{name}.*}}, but {why}")
        if port is None and url is None:
            return render(template, self.values)
        return render(template, {**self.values, "port": str(port), "url": url or ""})

    def render_env(
        self,
        values: Mapping[str, str],
        *,
        absent: Collection[str] = (),
        port: int | None = None,
        url: str | None = None,
        table: str = "env",
    ) -> dict[str, str]:
        """Environment variables filled. One naming a service that will not run (skipped,
        outside this run's selection, or `absent`: not running) is left out, so the
        program falls back to working without it (no REDIS_URL: an in-process cache),
        and a subset run works with the configuration of the whole stack. What is left
        out, and why, is kept in `left_out` under `TABLE.KEY`."""
        env: dict[str, str] = {}
        for key, value in values.items():
            gone = sorted(
                n for n in referenced_services(value) if n in absent or self.why_not(n) is not None
            )
            if gone:
                self.left_out[f"{table}.{key}"] = self.why_not(gone[0]) or (
                    f"'{gone[0]}' is not running"
                )
                continue
            try:
                env[key] = self.render(value, port=port, url=url)
            except TemplateError as exc:
                raise TemplateError(str(exc), key) from None
        return env
