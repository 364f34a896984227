"""From configuration to a concrete plan: which services run, on which ports, with every
template filled in. Everything that can be refused is refused here, before a process
starts: unknown programs, taken ports, optional services that are not installed."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from conductor import ports, postgres, templates
from conductor.config import Config, ReadySpec, ServiceSpec
from conductor.errors import ConfigError


@dataclass(frozen=True)
class PlannedService:
    """A service ready to start: concrete host, port, url, command and environment."""

    name: str
    spec: ServiceSpec
    host: str
    port: int | None
    url: str | None
    command: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    ready: ReadySpec
    depends_on: tuple[str, ...]
    reuse: bool
    log_path: Path
    pg_bindir: Path | None = None


@dataclass(frozen=True)
class Plan:
    config: Config
    logs_dir: Path
    services: Mapping[str, PlannedService]
    skipped: Mapping[str, str]


def env_name(service: str) -> str:
    """`NAME` in NAME_HOST/NAME_PORT/NAME_URL: upper case, other characters as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", service.upper())


def make_plan(
    config: Config,
    names: list[str] | None = None,
    *,
    auto_ports: bool = False,
    logs_dir: Path | None = None,
    check_ports: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """Settle ports and templates for `names` (and their dependencies)."""
    environ = os.environ if environ is None else environ
    logs = logs_dir or config.logs_dir
    order = config.start_order(names)
    specs = {name: config.services[name] for name in order}
    base: dict[str, str] = {
        "python": sys.executable,
        "root": str(config.root),
        "logs_dir": str(logs),
        "host": config.host,
        **{f"env.{k}": v for k, v in environ.items()},
    }
    skipped = _skipped(config, specs, base, environ)
    running = [n for n in order if n not in skipped]
    if any(specs[n].port is not None for n in running):
        _check_host(config)
    port_of = _ports(config, {n: specs[n] for n in running}, auto_ports)
    reuse = {
        n: _check_port(config, specs[n], port_of[n])
        for n in running
        if check_ports
        and isinstance(port_of[n], int)
        and specs[n].port != "auto"
        and not auto_ports
    }
    context = dict(base)
    for name in running:
        context[f"services.{name}.host"] = config.host
        if port_of[name] is not None:
            context[f"services.{name}.port"] = str(port_of[name])
    urls: dict[str, str | None] = {}
    for name in running:
        spec = specs[name]
        local = {**context, "port": str(port_of[name])}
        urls[name] = _url(config, spec, local, port_of[name])
        if urls[name] is not None:
            context[f"services.{name}.url"] = str(urls[name])
    planned = {}
    for name in running:
        spec = specs[name]
        local = {**context, "port": str(port_of[name]), "url": urls[name] or ""}
        try:
            planned[name] = _planned(config, spec, local, port_of[name], urls[name], skipped, logs)
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), file=config.file, service=name) from None
        planned[name] = replace(planned[name], reuse=reuse.get(name, False))
    return Plan(config=config, logs_dir=logs, services=planned, skipped=skipped)


def _skipped(
    config: Config,
    specs: Mapping[str, ServiceSpec],
    base: Mapping[str, str],
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Optional services whose program is missing; a required one is an error."""
    skipped: dict[str, str] = {}
    for name, spec in specs.items():
        missing = _missing_program(config, spec, base, environ)
        if missing is None:
            continue
        if spec.optional:
            skipped[name] = missing
        else:
            raise ConfigError(
                missing,
                file=config.file,
                service=name,
                key="kind" if spec.kind == "postgres" else "command[0]",
            )
    for name, spec in specs.items():
        for dep in spec.depends_on:
            if dep in skipped and name not in skipped and not specs[dep].optional:
                raise ConfigError(
                    f"depends on '{dep}', which cannot run: {skipped[dep]}",
                    file=config.file,
                    service=name,
                    key="depends_on",
                )
    return skipped


def _missing_program(
    config: Config, spec: ServiceSpec, base: Mapping[str, str], environ: Mapping[str, str]
) -> str | None:
    if spec.kind == "postgres":
        return None if postgres.find_bindir() else postgres.MISSING
    try:
        program = templates.render(spec.command[0], base)
    except templates.TemplateError:
        return None  # uses a service address; it is checked when it is rendered
    cwd = config.root / (spec.cwd or ".")
    if os.sep in program or "/" in program:
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return (
            None
            if os.access(path, os.X_OK)
            else (f"program '{program}' does not exist or is not executable; fix command[0]")
        )
    search = spec.env.get("PATH") or environ.get("PATH")
    if shutil.which(program, path=search) is None:
        return f"program '{program}' was not found on PATH; install it or fix command[0]"
    return None


def _ports(
    config: Config, specs: Mapping[str, ServiceSpec], auto_ports: bool
) -> dict[str, int | None]:
    wanted = [
        n for n, s in specs.items() if s.port == "auto" or (auto_ports and s.port is not None)
    ]
    free = iter(ports.free_ports(config.host, len(wanted)))
    result: dict[str, int | None] = {}
    seen: dict[int, str] = {}
    for name, spec in specs.items():
        port = next(free) if name in wanted else spec.port
        assert port != "auto"
        if isinstance(port, int):
            if port in seen:
                raise ConfigError(
                    f"port {port} is also the port of service '{seen[port]}'; give each its own",
                    file=config.file,
                    service=name,
                    key="port",
                )
            seen[port] = name
        result[name] = port
    return result


def _check_host(config: Config) -> None:
    """Refuse a `host` no server here could listen on, before anything starts: the
    services would only fail to bind, and probes would knock on another machine."""
    error = ports.bind_error(config.host)
    if error is not None:
        raise ConfigError(
            f"services cannot listen on '{config.host}' on this machine "
            f"({error.strerror or error}); use one of its own addresses, such as 127.0.0.1",
            file=config.file,
            key="host",
        )


def _check_port(config: Config, spec: ServiceSpec, port: int | None) -> bool:
    """True when the port is taken and the service may reuse what holds it."""
    if port is None or not ports.is_taken(config.host, port):
        return False
    if spec.reuse_existing:
        return True
    who = ports.holder(port)
    raise ConfigError(
        f"port {port} on {config.host} is already taken"
        + (f" by {who}" if who else "")
        + "; stop that process, set reuse_existing = true to use it, "
        "or pass --auto-ports (`conductor clean` stops leftovers of an earlier run)",
        file=config.file,
        service=spec.name,
        key="port",
    )


def _url(
    config: Config, spec: ServiceSpec, context: Mapping[str, str], port: int | None
) -> str | None:
    if spec.url is not None:
        try:
            return templates.render(spec.url, context)
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), file=config.file, service=spec.name, key="url") from None
    if spec.kind == "postgres":
        user = "postgres" if spec.password is None else f"postgres:{quote(spec.password, safe='')}"
        return f"postgresql://{user}@{config.host}:{port}/{spec.database}"
    if port is not None:
        return f"http://{config.host}:{port}"
    return None


def _planned(
    config: Config,
    spec: ServiceSpec,
    context: Mapping[str, str],
    port: int | None,
    url: str | None,
    skipped: Mapping[str, str],
    logs: Path,
) -> PlannedService:
    def fill(template: str, key: str) -> str:
        gone = templates.referenced_services(template) & set(skipped)
        if gone:
            name = sorted(gone)[0]
            raise templates.TemplateError(
                f"{key} uses optional service '{name}', which is skipped ({skipped[name]})"
            )
        return templates.render(template, context)

    env = {}
    for key, value in spec.env.items():
        # An env value naming a skipped optional service is left out, so the program
        # falls back to working without it (e.g. no REDIS_URL: in-process cache).
        if templates.referenced_services(value) & set(skipped):
            continue
        env[key] = fill(value, f"env.{key}")
    ready = spec.ready
    if ready.kind == "cmd" and isinstance(ready.target, tuple):
        ready = replace(ready, target=tuple(fill(a, "ready.cmd") for a in ready.target))
    elif ready.kind == "http" and isinstance(ready.target, str):
        ready = replace(ready, target=fill(ready.target, "ready.http"))
    cwd = config.root / fill(spec.cwd, "cwd") if spec.cwd else config.root
    return PlannedService(
        name=spec.name,
        spec=spec,
        host=config.host,
        port=port,
        url=url,
        command=tuple(fill(arg, "command") for arg in spec.command),
        env=env,
        cwd=cwd.resolve(),
        ready=ready,
        depends_on=tuple(d for d in spec.depends_on if d not in skipped),
        reuse=False,
        log_path=logs / f"{spec.name}.log",
        pg_bindir=postgres.find_bindir() if spec.kind == "postgres" else None,
    )
