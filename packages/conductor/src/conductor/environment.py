"""The environment of every process a run starts: each service, COMMAND, and the pytest
process (whose workers inherit it). One order, `Layer`; one merge, `build`.

Three kinds of stack hand out an environment: one conductor started (`run`, `up`, the
pytest plugin's own), a live `conductor up` attached to (`run --attach`, the plugin),
and the surrounding `conductor run` a pytest run finds itself in. They differ only in
what they put in each layer, never in which layer wins, so a started, an attached and
a surrounding stack give COMMAND the same environment by construction.
tests/test_environment.py fails if another module merges these layers itself (calls
the mark's `env`, builds a NAME_URL, or unpacks `os.environ` into a new environment).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conductor.config import templates
from conductor.config.schema import env_name
from conductor.process import ownership

if TYPE_CHECKING:
    from conductor.config.loading import Config
    from conductor.plan import PlannedService

# A command learns its run's logs folder from this (a pytest run inside `conductor run`
# fills {logs_dir} in its own templates with it); it is part of the run's mark.
LOGS_DIR_ENV = ownership.MARKER_LOGS
# Python services flush each line, so that a `ready = { log = ... }` probe and
# `fail.log` see it when it is printed, not when a buffer fills.
UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


class Layer(enum.Enum):
    """Where a variable comes from, weakest first: a later layer's value wins. The
    README's environment table lists the same rows in the same order (a test holds
    them together)."""

    ENV_FILE = "env_file"  # the top-level files, then the service's own
    INHERITED = "inherited"  # the environment conductor (or pytest) runs in
    UNBUFFERED = "PYTHONUNBUFFERED"  # services only
    ADDRESSES = "addresses"  # NAME_HOST, NAME_PORT, NAME_URL; COMMAND and pytest only
    SHARED = "env"  # the top-level env
    OWN = "own"  # a service's own env; COMMAND's [run].env
    REQUEST = "request"  # COMMAND's --env; the pytest plugin's conductor_env
    RUN = "run"  # the run's mark (CONDUCTOR_RUN_ID, _LOGS_DIR, _SERVICE), or the logs dir


Layers = Mapping[Layer, Mapping[str, str]]


# The layers whose values may be stale (a file, the shell's environment): when one of
# conductor's automatic addresses replaces such a value, the run says so.
SILENTLY_WEAKER = (Layer.ENV_FILE, Layer.INHERITED)


@dataclass(frozen=True)
class Environment:
    """A built environment, and for each variable the layer its value came from."""

    values: dict[str, str]
    sources: dict[str, Layer]
    # for each variable whose value a later layer replaced with a different one: the
    # layer of the value it replaced last
    replaced: dict[str, Layer] = field(default_factory=dict)

    def notices(self) -> list[str]:
        """One line per automatic address that replaced a different value from an
        env_file or the inherited environment (a shell's stale BACKEND_URL must not send
        the tests to another server, nor be replaced without a word)."""
        where = {Layer.ENV_FILE: "an env_file", Layer.INHERITED: "the inherited environment"}
        return [
            f"{key}: conductor's address replaces the value from {where[old]}; to keep "
            f'that value, set {key} = "{{env.{key}}}" in [run].env'
            for key, old in sorted(self.replaced.items())
            if self.sources[key] is Layer.ADDRESSES and old in SILENTLY_WEAKER
        ]

    def added(self) -> dict[str, str]:
        """What the run puts over the inherited environment (what the pytest plugin
        sets in os.environ, and gives back at the end)."""
        return {k: v for k, v in self.values.items() if self.sources[k] is not Layer.INHERITED}


def build(layers: Layers) -> Environment:
    """The one merge: every layer in `Layer` order, a later one's value winning."""
    values: dict[str, str] = {}
    sources: dict[str, Layer] = {}
    replaced: dict[str, Layer] = {}
    for layer in Layer:
        for key, value in layers.get(layer, {}).items():
            if key in values and values[key] != value:
                replaced[key] = sources[key]
            values[key] = value
            sources[key] = layer
    return Environment(values, sources, replaced)


@dataclass(frozen=True)
class Address:
    """Where a running service is: what NAME_HOST, NAME_PORT and NAME_URL say."""

    host: str
    port: int | None
    url: str | None

    def as_json(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "url": self.url}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> Address:
        port, url = raw.get("port"), raw.get("url")
        return cls(
            host=str(raw["host"]),
            port=port if isinstance(port, int) else None,
            url=url if isinstance(url, str) else None,
        )


def variables(name: str) -> tuple[str, str, str]:
    """The names of service `name`'s NAME_HOST, NAME_PORT and NAME_URL."""
    prefix = env_name(name)
    return f"{prefix}_HOST", f"{prefix}_PORT", f"{prefix}_URL"


def address_env(addresses: Mapping[str, Address]) -> dict[str, str]:
    """NAME_HOST, NAME_PORT and NAME_URL for every service in `addresses`."""
    out: dict[str, str] = {}
    for name, address in addresses.items():
        host, port, url = variables(name)
        out[host] = address.host
        if address.port is not None:
            out[port] = str(address.port)
        if address.url is not None:
            out[url] = address.url
    return out


def from_environ(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, Address]:
    """The services among `names` whose NAME_HOST or NAME_URL is in `environ`: the
    addresses a surrounding `conductor run` put there (address_env read back)."""
    found: dict[str, Address] = {}
    for name in names:
        host_var, port_var, url_var = variables(name)
        host, url = environ.get(host_var), environ.get(url_var)
        if not host and not url:
            continue
        port = environ.get(port_var, "")
        found[name] = Address(
            host=host or "", port=int(port) if port.isdigit() else None, url=url or None
        )
    return found


def file_values(config: Config, service: str | None = None) -> dict[str, str]:
    """The env_file layer of a process: the top-level files', then the service's own."""
    return {**config.files.get("", {}), **config.files.get(service or "", {})}


def template_environ(top_files: Mapping[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """What `{env.NAME}` sees: the top-level env_file values under the real environment,
    in the same order as every process's environment."""
    return build({Layer.ENV_FILE: top_files, Layer.INHERITED: inherited}).values


def service(
    planned: PlannedService, mark: ownership.Mark, inherited: Mapping[str, str]
) -> dict[str, str]:
    """A started service's environment: the layers its plan filled (env_file, the
    top-level env, its own env) with the inherited environment and the run's mark. It
    gets no other service's NAME_* variables: its own `env` says what it needs
    ({services.db.url})."""
    return build(
        {
            **planned.env,
            Layer.INHERITED: inherited,
            Layer.UNBUFFERED: UNBUFFERED,
            Layer.RUN: mark.env(planned.name),
        }
    ).values


def container(planned: PlannedService) -> dict[str, str]:
    """A container's environment: only what the configuration gives it (its env_file
    values, the top-level env, its own env), none of the host's; the engine passes each
    as `--env NAME`, the value in its own environment (environment.service)."""
    return build(dict(planned.env)).values


def planned_layers(
    config: Config, name: str, shared: Mapping[str, str], own: Mapping[str, str]
) -> Layers:
    """The layers a plan fills for service `name`: its env_file values, the top-level
    env and its own env, each already rendered."""
    return {Layer.ENV_FILE: file_values(config, name), Layer.SHARED: shared, Layer.OWN: own}


@dataclass(frozen=True)
class Requested:
    """COMMAND's templates by layer: the top-level env, [run].env, and --env (or the
    plugin's conductor_env). Each is filled on its own, so that an entry left out (it
    names a service that is not running) lets a weaker layer's value show."""

    shared: Mapping[str, str]
    own: Mapping[str, str]
    request: Mapping[str, str]

    @classmethod
    def of(cls, config: Config, request: Mapping[str, str] | None = None) -> Requested:
        return cls(config.env, config.run.env, dict(request or {}))

    def without(self, names: Collection[str]) -> Requested:
        """The configuration's own templates minus `names` (those a surrounding run
        already filled for this very command); the request is kept whole."""
        return Requested(
            {k: v for k, v in self.shared.items() if k not in names},
            {k: v for k, v in self.own.items() if k not in names},
            self.request,
        )

    def filled(
        self, context: templates.Context, absent: Collection[str]
    ) -> dict[Layer, dict[str, str]]:
        """Each layer's templates filled; TemplateError names the variable."""
        return {
            Layer.SHARED: context.render_env(self.shared, absent=absent),
            Layer.OWN: context.render_env(self.own, absent=absent, table="run.env"),
            Layer.REQUEST: context.render_env(self.request, absent=absent, table="--env"),
        }


def context_of(
    config: Config,
    logs_dir: Path,
    addresses: Mapping[str, Address],
    values: Mapping[str, str] | None = None,
) -> templates.Context:
    """The template context of a stack conductor did not plan: the configuration's own
    values, the running services' addresses, and `values` (the {services.NAME.*} a live
    `up` recorded: user, database, ...)."""
    context = templates.Context(
        root=config.root,
        host=config.host,
        logs_dir=logs_dir,
        environ=config.environ,
        python=config.python,
    )
    for name, address in addresses.items():
        context.add_service(name, host=address.host, port=address.port, url=address.url)
    context.values.update(values or {})
    return context


def command(
    config: Config,
    requested: Requested,
    context: templates.Context,
    running: Mapping[str, Address],
    *,
    run: ownership.Mark | Path | None,
    inherited: Mapping[str, str],
    addresses: bool = True,
) -> Environment:
    """COMMAND's environment, and the pytest process's: `running` services' addresses,
    the templates filled from `context` (one naming a service that is not running is
    left out, as in a service's own env), then `run`: COMMAND's mark, or for pytest
    (not one of the run's processes) the logs folder only, or None (a surrounding run
    gave it already). `addresses` False: the inherited environment holds them already
    (a surrounding run built it with this function)."""
    absent = set(config.services) - set(running)
    with templates.config_error(table="--env "):
        filled = requested.filled(context, absent)
    return build(
        {
            Layer.ENV_FILE: file_values(config),
            Layer.INHERITED: inherited,
            Layer.ADDRESSES: address_env(running) if addresses else {},
            **filled,
            Layer.RUN: _run_layer(run),
        }
    )


def _run_layer(run: ownership.Mark | Path | None) -> dict[str, str]:
    if isinstance(run, ownership.Mark):
        return run.env(ownership.COMMAND)
    return {} if run is None else {LOGS_DIR_ENV: str(run)}
