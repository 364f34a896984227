"""From configuration to a concrete plan: which services run, on which ports, with every
template filled in. Everything that can be refused is refused here, before a process
starts: unknown programs, taken ports, optional services that are not installed."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from conductor import masking, ports, postgres, templates
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
    context: templates.Context

    def command_env(
        self, values: Mapping[str, str], up: Collection[str] | None = None
    ) -> dict[str, str]:
        """COMMAND's `--env NAME=TEMPLATE` values filled. One naming a service that is
        not up (skipped, not ready, or not part of this run) is left out, as in a
        service's own env. `up` None: every planned service."""
        running = set(self.services) if up is None else set(up) & set(self.services)
        return self.context.render_env(values, absent=set(self.config.services) - running)


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
    command_env: Mapping[str, str] | None = None,
) -> Plan:
    """Settle ports and templates for `names` (and their dependencies), and check that
    COMMAND's `command_env` templates (--env) can be filled."""
    environ = os.environ if environ is None else environ
    logs = logs_dir or config.logs_dir
    specs = {name: config.services[name] for name in config.start_order(names)}
    context = templates.Context(root=config.root, host=config.host, logs_dir=logs, environ=environ)
    skipped = _skipped(config, specs, context, environ)
    running = {n: spec for n, spec in specs.items() if n not in skipped}
    if any(spec.port is not None for spec in running.values()):
        _check_host(config)
    port_of = _ports(config, running, auto_ports)
    reuse = {
        n: _check_port(config, n, spec, port_of[n])
        for n, spec in running.items()
        if check_ports and isinstance(port_of[n], int) and spec.port != "auto" and not auto_ports
    }
    for name, reason in skipped.items():
        context.skip(name, reason)
    for spec in running.values():
        if spec.password is not None:
            masking.hide(spec.password)  # before anything can print it
    for name in running:
        context.add_service(name, host=config.host, port=port_of[name], url=None)
    urls = {n: _url(config, n, spec, context, port_of[n]) for n, spec in running.items()}
    for name in running:
        context.add_service(name, host=config.host, port=port_of[name], url=urls[name])
    planned = {
        name: _planned(config, name, spec, context, port_of[name], urls[name], logs)
        for name, spec in running.items()
    }
    plan = Plan(
        config=config,
        logs_dir=logs,
        services={n: replace(p, reuse=reuse.get(n, False)) for n, p in planned.items()},
        skipped=skipped,
        context=context,
    )
    _check_command_env(plan, command_env or {}, environ)
    return plan


def _check_command_env(plan: Plan, values: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """--env templates: names checked like a service's, then filled once, so that what
    cannot work fails before anything starts."""
    scope = templates.Scope(services=plan.config.services, environ=environ, owner="command")
    for key, template in values.items():
        try:
            templates.check(template, scope)
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), key=f"--env {key}") from None
    try:
        plan.command_env(values)
    except templates.TemplateError as exc:
        raise ConfigError(str(exc), key=f"--env {exc.key}") from None


def _skipped(
    config: Config,
    specs: Mapping[str, ServiceSpec],
    context: templates.Context,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Optional services whose program is missing; a required one is an error."""
    skipped: dict[str, str] = {}
    for name, spec in specs.items():
        missing = _missing_program(config, spec, context, environ)
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
    config: Config, spec: ServiceSpec, context: templates.Context, environ: Mapping[str, str]
) -> str | None:
    if spec.kind == "postgres":
        return None if postgres.find_bindir() else postgres.MISSING
    try:
        program = context.render(spec.command[0])
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


def _check_port(config: Config, name: str, spec: ServiceSpec, port: int | None) -> bool:
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
        service=name,
        key="port",
    )


def _url(
    config: Config, name: str, spec: ServiceSpec, context: templates.Context, port: int | None
) -> str | None:
    if spec.url is not None:
        try:
            return context.render(spec.url, port=port)
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), file=config.file, service=name, key="url") from None
    if spec.kind == "postgres":
        user = "postgres" if spec.password is None else f"postgres:{quote(spec.password, safe='')}"
        return f"postgresql://{user}@{config.host}:{port}/{spec.database}"
    if port is not None:
        return f"http://{config.host}:{port}"
    return None


def _planned(
    config: Config,
    name: str,
    spec: ServiceSpec,
    context: templates.Context,
    port: int | None,
    url: str | None,
    logs: Path,
) -> PlannedService:
    def fill(template: str, key: str) -> str:
        try:
            return context.render(template, port=port, url=url)
        except templates.TemplateError as exc:
            raise ConfigError(str(exc), file=config.file, service=name, key=key) from None

    try:
        env = context.render_env(spec.env, port=port, url=url)
    except templates.TemplateError as exc:
        raise ConfigError(str(exc), file=config.file, service=name, key=f"env.{exc.key}") from None
    cwd = config.root / fill(spec.cwd, "cwd") if spec.cwd else config.root
    return PlannedService(
        name=name,
        spec=spec,
        host=config.host,
        port=port,
        url=url,
        command=tuple(fill(arg, f"command[{i}]") for i, arg in enumerate(spec.command)),
        env=env,
        cwd=cwd.resolve(),
        ready=spec.ready.filled(fill),
        depends_on=tuple(d for d in spec.depends_on if d not in context.skipped),
        reuse=False,
        log_path=logs / f"{name}.log",
        pg_bindir=postgres.find_bindir() if spec.kind == "postgres" else None,
    )
