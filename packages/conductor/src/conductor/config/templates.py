"""`{name}` placeholders in commands, env values, cwd, urls and COMMAND's `--env`.

The one place templates are checked and filled. Names are checked when the
configuration is loaded (`check`), so a typo ends the run before anything starts;
values are filled (`Context`) only once every port is settled.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conductor.errors import ConfigError

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
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
    """The placeholder names in `template`, in order (escaped braces are skipped)."""
    for match in _FIELD.finditer(template):
        if match.group(1) is not None:
            yield match.group(1).strip()
    if re.search(r"(?<!\{)\{(?!\{)[^}]*$", _FIELD.sub("", template)):
        raise TemplateError("has an unclosed '{' (write '{{' for a literal brace)")


# {env.NAME}, {env.NAME:-default} (unset or empty: the default), {env.NAME:?message}
# (unset or empty: the run ends with the message), as in docker compose and the shell.
_ENV = re.compile(r"env\.(?P<var>[^.:{}]+)(?::(?P<op>[-?])(?P<arg>.*))?", re.DOTALL)


@dataclass(frozen=True)
class EnvRef:
    """A parsed `{env...}` placeholder."""

    var: str
    op: str | None  # "-", "?" or None
    arg: str

    def value(self, environ: Mapping[str, str]) -> str:
        """What the placeholder becomes; TemplateError when it cannot be filled."""
        found = environ.get(self.var)
        if self.op == "-":
            return found or self.arg
        if self.op == "?" and not found:
            raise TemplateError(
                self.arg.strip() or f"environment variable {self.var} is not set or empty"
            )
        if found is None:
            raise TemplateError(
                f"uses '{{env.{self.var}}}' but environment variable {self.var} is not set; "
                f"set it, or give a default: {{env.{self.var}:-DEFAULT}}"
            )
        return found


def env_ref(name: str) -> EnvRef | None:
    """`name` as an `{env...}` placeholder, or None when it is not one."""
    match = _ENV.fullmatch(name)
    if match is None:
        return None
    return EnvRef(match["var"], match["op"], match["arg"] or "")


def check_name(name: str, services: Collection[str], postgres: Collection[str] = ()) -> None:
    """Raise TemplateError unless `name` is one conductor knows how to fill; `postgres`
    are the services of kind "postgres", which offer POSTGRES_ATTRS too."""
    if name in SIMPLE_NAMES or env_ref(name) is not None:
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
    """Raise TemplateError unless every placeholder of `template` can be filled in `scope`."""
    for name in fields(template):
        check_name(name, scope.services, scope.postgres)
        _check_owner(name, scope)
        ref = env_ref(name)
        if ref is not None:
            ref.value(scope.environ)


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

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        name = match.group(1).strip()
        ref = env_ref(name)
        if ref is not None:
            return ref.value(_Environ(context))
        try:
            return context[name]
        except KeyError:
            raise TemplateError(f"'{{{name}}}' has no value here") from None

    return _FIELD.sub(replace, template)


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
