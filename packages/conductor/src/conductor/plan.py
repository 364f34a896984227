"""From configuration to a concrete plan: which services run, on which ports, with every
template filled in. Everything that can be refused is refused here, before a process
starts: unknown programs, taken ports, optional services that are not installed."""

from __future__ import annotations

import os
import shutil
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from conductor import environment, ports
from conductor.config import schema, templates
from conductor.config.loading import Config, ReadySpec, ServiceSpec
from conductor.errors import ConfigError
from conductor.files import logs, masking
from conductor.postgres import binaries

# Imported only by a plan that has such a service: conductor.container (the engine's
# inspect Structs) for kind = "container", conductor.postgres.clusters (with the
# template cache's hashlib) for kind = "postgres"; every run pays for what it imports
# before its first spawn (test_start_imports.py).
if TYPE_CHECKING:
    from conductor.postgres import clusters


@dataclass(frozen=True)
class PlannedService:
    """A service ready to start: concrete host, port, url, command and environment."""

    name: str
    spec: ServiceSpec
    host: str
    port: int | None
    url: str | None
    command: tuple[str, ...]
    # its env_file values, the top-level env and its own, filled; the rest (inherited,
    # the mark) is added at spawn by environment.service
    env: environment.Layers
    cwd: Path
    ready: ReadySpec
    depends_on: tuple[str, ...]
    reuse: bool
    log_path: Path
    pg: clusters.Setup | None = None  # kind = "postgres" only


@dataclass(frozen=True)
class Plan:
    config: Config
    logs_dir: Path
    services: Mapping[str, PlannedService]
    skipped: Mapping[str, str]
    context: templates.Context

    @property
    def written(self) -> list[str]:
        """The names of the files a run of this plan writes in its logs folder."""
        own = [logs.EVENT_LOG, *logs.REPORT_FILES]
        return own + [service.log_path.name for service in self.services.values()]


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
    environ = config.environ if environ is None else environ
    logs = logs_dir or config.logs_dir
    specs = {name: config.services[name] for name in config.start_order(names)}
    context = templates.Context(
        root=config.root, host=config.host, logs_dir=logs, environ=environ, python=config.python
    )
    skipped = _skipped(config, specs, context, environ)
    running = {n: spec for n, spec in specs.items() if n not in skipped}
    if any(spec.port is not None for spec in running.values()):
        _check_host(config)
    port_of = _ports(config, running, auto_ports)
    reuse = _reused(config, running, port_of) if check_ports and not auto_ports else {}
    for name, reason in skipped.items():
        context.skip(name, reason)
    context.leave_out(set(config.services) - set(specs), list(running))
    setups = _postgres_setups(config, running, context)
    urls = _addresses(config, running, context, port_of, setups)
    planned = {
        name: _planned(config, name, spec, context, port_of[name], urls[name], logs)
        for name, spec in running.items()
    }
    plan = Plan(
        config=config,
        logs_dir=logs,
        services={
            n: replace(p, reuse=reuse.get(n, False), pg=setups.get(n)) for n, p in planned.items()
        },
        skipped=skipped,
        context=context,
    )
    _check_command_env(plan, command_env or {}, environ)
    return plan


def check_ports(plan: Plan, *, auto_ports: bool = False) -> Plan:
    """`plan` (made with check_ports=False) with its fixed ports checked, as make_plan
    checks them: a taken port is an error, or reused with reuse_existing. A start plans
    once, before it touches the logs folder, and checks ports only here, once an earlier
    run's leftovers (which may hold them) are gone."""
    if auto_ports:
        return plan
    services = plan.services
    reuse = _reused(
        plan.config,
        {n: p.spec for n, p in services.items()},
        {n: p.port for n, p in services.items()},
    )
    return replace(
        plan, services={n: replace(p, reuse=reuse.get(n, False)) for n, p in services.items()}
    )


def _reused(
    config: Config, running: Mapping[str, ServiceSpec], port_of: Mapping[str, int | None]
) -> dict[str, bool]:
    """For each service on a fixed port: whether it reuses what holds the port (a port
    taken without reuse_existing is an error)."""
    return {
        n: _check_port(config, n, spec, port_of[n])
        for n, spec in running.items()
        if isinstance(port_of[n], int) and spec.port != "auto"
    }


def _addresses(
    config: Config,
    running: Mapping[str, ServiceSpec],
    context: templates.Context,
    port_of: Mapping[str, int | None],
    setups: Mapping[str, clusters.Setup],
) -> dict[str, str | None]:
    """Each service's url, with every service's host and port (which urls may use) and
    then its url given to templates."""
    for name in running:
        context.add_service(name, host=config.host, port=port_of[name], url=None)
    urls = {
        n: _url(config, n, spec, context, port_of[n], setups.get(n)) for n, spec in running.items()
    }
    for name in running:
        context.add_service(name, host=config.host, port=port_of[name], url=urls[name])
    return urls


def _check_command_env(plan: Plan, values: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """--env templates: names checked like a service's, then filled once, so that what
    cannot work fails before anything starts."""
    postgres = [n for n, s in plan.config.services.items() if s.kind == "postgres"]
    scope = templates.Scope(
        services=plan.config.services, environ=environ, owner="command", postgres=postgres
    )
    for key, template in values.items():
        problem = schema.env_problem(key, template)
        if problem is not None:
            raise ConfigError(problem, key=f"--env {key}")
        with templates.config_error(key=f"--env {key}"):
            templates.check(template, scope)
    requested = environment.Requested.of(plan.config, values)
    with templates.config_error(table="--env "):
        requested.filled(plan.context, absent=set(plan.config.services) - set(plan.services))


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
            raise ConfigError(missing, file=config.file, service=name, key=_program_key(spec))
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


def _program_key(spec: ServiceSpec) -> str:
    """The key to fix when a service's program is missing."""
    if spec.kind == "postgres":
        return "version" if spec.version is not None else "kind"
    if spec.kind == "container":
        return "engine" if spec.engine is not None else "kind"
    return "command[0]"


def _missing_program(
    config: Config, spec: ServiceSpec, context: templates.Context, environ: Mapping[str, str]
) -> str | None:
    if spec.kind == "postgres":
        return binaries.missing(typing.cast(str | None, spec.version))
    if spec.kind == "container":
        from conductor import container

        try:
            container.find_engine(spec.engine, environ)
        except container.NoEngine as exc:
            return str(exc)
        return None
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
    if shutil.which(program, path=_search_path(config, spec, context, cwd, environ)) is None:
        return f"program '{program}' was not found on PATH; install it or fix command[0]"
    return None


def _search_path(
    config: Config,
    spec: ServiceSpec,
    context: templates.Context,
    cwd: Path,
    environ: Mapping[str, str],
) -> str | None:
    """The PATH the service's program is looked up on: its own env's PATH rendered
    (`PATH = "venv/bin:{env.PATH}"`), else the top-level env's, else ours; relative
    entries count from the service's folder, as they do when it is started there."""
    template = spec.env.get("PATH") or config.env.get("PATH")
    try:
        search = context.render(template) if template is not None else environ.get("PATH")
    except templates.TemplateError:
        search = environ.get("PATH")  # names a service address: known only later
    if search is None:
        return None
    return os.pathsep.join(
        entry if os.path.isabs(entry) else str(cwd / entry) for entry in search.split(os.pathsep)
    )


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


def _postgres_setups(
    config: Config, running: Mapping[str, ServiceSpec], context: templates.Context
) -> dict[str, clusters.Setup]:
    """Each postgres service's setup, its values given to templates and its password
    to the mask, before anything can print it."""
    setups: dict[str, clusters.Setup] = {}
    for name, spec in running.items():
        if spec.kind != "postgres":
            continue
        setup = setups[name] = _postgres_setup(config, name, spec, context)
        if setup.password is not None:
            masking.hide(setup.password)
        context.add_postgres(
            name,
            user=setup.user,
            password=setup.password,
            database=setup.database,
            socket_dir=setup.folder,
        )
    return setups


def _postgres_setup(
    config: Config, name: str, spec: ServiceSpec, context: templates.Context
) -> clusters.Setup:
    """user, password and database filled ({env...}), init files found, settings as -c
    values, and the folder this run's cluster will have."""
    from conductor.postgres import clusters

    def fill(key: str) -> str | None:
        template = getattr(spec, key)
        if template is None:
            return None
        with templates.config_error(file=config.file, service=name, key=key):
            value = context.render(template)
        if not value or any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ConfigError(
                "must not be empty or hold control characters"
                + ("" if key == "password" else f" (it is {value!r})"),
                file=config.file,
                service=name,
                key=key,
            )
        return value

    bindir = binaries.find_bindir(typing.cast(str | None, spec.version))
    assert bindir is not None, "checked by _skipped"
    init: list[tuple[str, Path]] = []
    for i, written in enumerate(spec.init):
        path = (config.root / written).resolve()
        if not path.is_file():
            raise ConfigError(
                f"SQL file {path} does not exist", file=config.file, service=name, key=f"init[{i}]"
            )
        init.append((written, path))
    if init and not (bindir / "psql").is_file():
        raise ConfigError(
            f"init files run with psql, which is not in {bindir}; install PostgreSQL's "
            "client (Debian: apt-get install postgresql-client)",
            file=config.file,
            service=name,
            key="init",
        )
    folder = clusters.plan_folder()
    problem = clusters.socket_path_problem(folder)
    if problem is not None:
        raise ConfigError(problem, file=config.file, service=name)
    from conductor.postgres import template_cache  # with clusters: postgres plans only

    try:
        cache_entries = template_cache.bound()
    except ValueError as exc:
        raise ConfigError(str(exc), service=name) from None
    return clusters.Setup(
        bindir=bindir,
        folder=folder,
        user=fill("user") or "postgres",
        password=fill("password"),
        database=fill("database") or "postgres",
        init=tuple(init),
        settings=tuple((k, clusters.setting_value(v)) for k, v in spec.settings.items()),
        cache_entries=cache_entries,
    )


def _url(
    config: Config,
    name: str,
    spec: ServiceSpec,
    context: templates.Context,
    port: int | None,
    setup: clusters.Setup | None,
) -> str | None:
    if spec.url is not None:
        with templates.config_error(file=config.file, service=name, key="url"):
            return context.render(spec.url, port=port)
    if setup is not None:
        user = quote(setup.user, safe="")
        if setup.password is not None:
            user += ":" + quote(setup.password, safe="")
        return f"postgresql://{user}@{config.host}:{port}/{quote(setup.database, safe='')}"
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
        with templates.config_error(file=config.file, service=name, key=key):
            return context.render(template, port=port, url=url)

    with templates.config_error(file=config.file, table="env."):
        shared = context.render_env(config.env)
    with templates.config_error(file=config.file, service=name, table="env."):
        own = context.render_env(spec.env, port=port, url=url, table=f"services.{name}.env")
    cwd = config.root / fill(spec.cwd, "cwd") if spec.cwd else config.root
    return PlannedService(
        name=name,
        spec=spec,
        host=config.host,
        port=port,
        url=url,
        command=tuple(fill(arg, f"command[{i}]") for i, arg in enumerate(spec.command)),
        env=environment.planned_layers(config, name, shared, own),
        cwd=cwd.resolve(),
        ready=spec.ready.filled(fill),
        depends_on=tuple(d for d in spec.depends_on if d not in context.skipped),
        reuse=False,
        log_path=logs / f"{name}.log",
    )
