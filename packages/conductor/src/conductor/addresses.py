"""Where running services are, and the environment that tells a command: NAME_HOST,
NAME_PORT, NAME_URL and the `--env NAME=TEMPLATE` values.

One place for it, because three kinds of stack hand it out: one conductor started,
a live `conductor up` attached to, and the surrounding `conductor run` a pytest run
finds itself in (read back from the environment with `from_environ`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conductor import templates
from conductor.config import Config
from conductor.errors import ConfigError
from conductor.owned import MARKER_LOGS
from conductor.schema import env_name

# A command learns its run's logs folder from this (a pytest run inside `conductor run`
# fills {logs_dir} in its own templates with it); it is part of the run's mark.
LOGS_DIR_ENV = MARKER_LOGS


@dataclass(frozen=True)
class Address:
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


def service_env(addresses: Mapping[str, Address]) -> dict[str, str]:
    """NAME_HOST, NAME_PORT and NAME_URL for every service in `addresses`."""
    out: dict[str, str] = {}
    for name, address in addresses.items():
        prefix = env_name(name)
        out[f"{prefix}_HOST"] = address.host
        if address.port is not None:
            out[f"{prefix}_PORT"] = str(address.port)
        if address.url is not None:
            out[f"{prefix}_URL"] = address.url
    return out


def from_environ(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, Address]:
    """The services among `names` whose NAME_HOST or NAME_URL is in `environ`."""
    found: dict[str, Address] = {}
    for name in names:
        prefix = env_name(name)
        host, url = environ.get(f"{prefix}_HOST"), environ.get(f"{prefix}_URL")
        if not host and not url:
            continue
        port = environ.get(f"{prefix}_PORT", "")
        found[name] = Address(
            host=host or "", port=int(port) if port.isdigit() else None, url=url or None
        )
    return found


def exported_env(
    config: Config,
    logs_dir: Path,
    addresses: Mapping[str, Address],
    command_templates: Mapping[str, str],
    environ: Mapping[str, str],
    values: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a stack adds to its command's environment: each service's address, then the
    `--env NAME=TEMPLATE` values filled from those addresses and from `values` (the
    {services.NAME.*} a live `up` recorded); one naming a service that is not among them
    is left out, as in a service's own env."""
    context = templates.Context(
        root=config.root, host=config.host, logs_dir=logs_dir, environ=environ
    )
    for name, address in addresses.items():
        context.add_service(name, host=address.host, port=address.port, url=address.url)
    context.values.update(values or {})  # what a live `up` recorded: user, database, ...
    try:
        values = context.render_env(command_templates, absent=set(config.services) - set(addresses))
    except templates.TemplateError as exc:
        raise ConfigError(str(exc), key=f"--env {exc.key}") from None
    return {**service_env(addresses), **values}
