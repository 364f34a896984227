"""Reading `[tool.conductor]`: everything that can be wrong in the file is found here,
before a single process starts, and reported as one ConfigError.

The shape of each table is declared in `schema`; this module finds and reads the file,
and checks what no single table can: dependencies, their order, and templates."""

from __future__ import annotations

import graphlib
import os
import re
import shutil
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conductor import environment
from conductor.config import envfile, schema, templates
from conductor.config.schema import ReadyKind, ReadySpec, ServiceKind, ServiceSpec
from conductor.errors import ConfigError
from conductor.files import safe_io
from conductor.rundir import folder_rules

__all__ = [
    "Config",
    "ReadyKind",
    "ReadySpec",
    "ServiceKind",
    "ServiceSpec",
    "find_config",
    "load_config",
]


@dataclass(frozen=True)
class Config:
    """A whole validated configuration; `services` is in start (dependency) order."""

    file: Path
    root: Path
    logs_dir: Path
    host: str
    services: Mapping[str, ServiceSpec]
    # What `{env.NAME}` sees: the top-level env_file's variables under the real
    # environment, which wins. Each service's own env_file values are in `files`.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)  # top-level env templates
    run: schema.RunSpec = field(default_factory=schema.RunSpec)
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def command_cwd(self) -> Path | None:
        """[run].cwd, relative to the configuration file; None: where conductor runs."""
        return None if self.run.cwd is None else (self.root / self.run.cwd).resolve()

    def start_order(self, names: list[str] | None = None) -> list[str]:
        """`names` and everything they depend on, dependencies first (all when None)."""
        if not names:
            return list(self.services)
        self._known(names)
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.services[name].depends_on)
        return [n for n in self.services if n in wanted]

    def _known(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.services]
        if unknown:
            known = ", ".join(self.services) or "none"
            raise ConfigError(
                f"unknown service {', '.join(repr(n) for n in unknown)} on the command line "
                f"(known: {known})",
                file=self.file,
            )


STANDALONE = "conductor.toml"


def find_config(start: Path | None = None) -> Path:
    """The configuration nearest `start`: in each folder from there up, a standalone
    conductor.toml first, then a pyproject.toml that has `[tool.conductor]`.

    A pyproject.toml that cannot be read or parsed ends the search with an error: the
    one meant may be that very file, and a folder further up belongs to something else."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STANDALONE).is_file():
            return folder / STANDALONE
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _conductor_table(_read(candidate), candidate) is not None:
            return candidate
    raise ConfigError(
        f"no {STANDALONE}, and no pyproject.toml with a [tool.conductor] table, in {here} "
        f"or above; add one or pass --config FILE"
    )


def load_config(path: Path | str | None = None, *, logs_dir: Path | str | None = None) -> Config:
    """Load and validate a configuration; `path` None means find_config()."""
    try:
        file = (Path(path) if path is not None else find_config()).resolve()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot be used as a configuration file ({exc})", file=path) from None
    data = _read(file)
    if file.name == "pyproject.toml" or "tool" in data:
        table = _conductor_table(data, file)
        if table is None:
            raise ConfigError("has no [tool.conductor] table", file=file)
        prefix = "tool.conductor."
    else:
        table, prefix = data, ""
    return _parse(table, file, prefix, logs_dir)


def _read(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found; check the --config path", file=file) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot be read ({exc})", file=file) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"is not valid TOML: {exc}; fix it or pass --config FILE", file=file
        ) from None
    except RecursionError:
        # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(
            "is too deeply nested to read (arrays or tables inside one another, "
            "hundreds of levels deep); no setting of conductor's nests like that: fix it",
            file=file,
        ) from None


def _conductor_table(data: dict[str, Any], file: Path) -> dict[str, Any] | None:
    """`[tool.conductor]` of a pyproject, None when it has none."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError("must be a table", file=file, key="tool")
    table = tool.get("conductor")
    if table is not None and not isinstance(table, dict):
        raise ConfigError("must be a table", file=file, key="tool.conductor")
    return table


def _parse(table: dict[str, Any], file: Path, prefix: str, logs_dir: Path | str | None) -> Config:
    doc = schema.convert(table, schema.Document, file=file, prefix=prefix)
    if not doc.services:
        raise ConfigError(
            "defines no services; add a [tool.conductor.services.NAME] table",
            file=file,
            key=f"{prefix}services",
        )
    _check_names(list(doc.services), file, prefix)
    services = {
        name: schema.convert(raw, ServiceSpec, file=file, service=name)
        for name, raw in doc.services.items()
    }
    _check_dependencies(services, file)
    root = file.parent
    files = {"": envfile.read(doc.env_file, root=root, file=file, key=f"{prefix}env_file")}
    for name, spec in services.items():
        files[name] = envfile.read(spec.env_file, root=root, file=file, service=name)
    environ = environment.template_environ(files[""], os.environ)
    for name, spec in services.items():
        _check_templates(name, spec, services, file, environ)
    for key, template in [
        *((f"{prefix}env.{k}", v) for k, v in doc.env.items()),
        *((f"{prefix}run.env.{k}", v) for k, v in doc.run.env.items()),
    ]:
        _check_command_template(key, template, services, file, environ)
    _check_run_cwd(doc.run.cwd, root, file, f"{prefix}run.cwd")
    if problem := folder_rules.unfit(doc.logs_dir, root):
        raise ConfigError(problem, file=file, key=f"{prefix}logs_dir")
    logs = Path(logs_dir if logs_dir is not None else doc.logs_dir)
    return Config(
        file=file,
        root=root,
        logs_dir=logs if logs.is_absolute() else (root / logs).resolve(),
        host=doc.host,
        services={name: services[name] for name in _start_order(services, file)},
        environ=environ,
        files=files,
        env=doc.env,
        run=doc.run,
        python=_python(doc.python, root, file, f"{prefix}python"),
    )


def _check_run_cwd(written: str | None, root: Path, file: Path, key: str) -> None:
    """[run].cwd must be a folder: COMMAND's spawn would fail there only after every
    service started, as 127 or 126, as if COMMAND itself could not be found or run."""
    if written is None:
        return
    try:
        folder = (root / written).resolve()
        mode = folder.stat().st_mode
    except FileNotFoundError:
        problem = "does not exist"
    except (OSError, ValueError) as exc:
        problem = f"cannot be used ({exc})"
    else:
        problem = "" if stat.S_ISDIR(mode) else f"is {safe_io.kind(mode)}, not a folder"
    if problem:
        raise ConfigError(
            f"{root / written} {problem}; point it at the folder COMMAND runs in",
            file=file,
            key=key,
        )


def _python(written: str | None, root: Path, file: Path, key: str) -> str:
    """The interpreter `{python}` means: conductor's own, or the file's `python`."""
    if written is None:
        return sys.executable
    try:
        # A path from the file's folder, else (a bare name such as python3.12) PATH.
        path = root / written
        found = str(path) if path.is_file() or "/" in written else shutil.which(written)
        ok = found is not None and Path(found).is_file() and os.access(found, os.X_OK)
    except (OSError, ValueError):
        ok, found = False, None
    if not ok or found is None:
        raise ConfigError(
            f"{written!r} is not an executable interpreter; point it at one, such as "
            '".venv/bin/python"',
            file=file,
            key=key,
        )
    return found


def _check_command_template(
    key: str,
    template: str,
    services: Mapping[str, ServiceSpec],
    file: Path,
    environ: Mapping[str, str],
) -> None:
    """Top-level env and [run].env belong to no one service: they may name any
    service's address, but not {port} or {url}."""
    scope = templates.Scope(
        services=services,
        environ=environ,
        owner="command",
        postgres=[n for n, s in services.items() if s.kind == "postgres"],
    )
    with templates.config_error(file=file, key=key):
        templates.check(template, scope)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _check_names(names: list[str], file: Path, prefix: str) -> None:
    """A service name becomes a file name (NAME.log) and variable names (NAME_URL): a
    safe set of characters, and no two names that give the same variables."""
    seen: dict[str, str] = {}
    for name in names:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"service name {name!r} may hold only 1 to 63 ASCII letters, digits, '-' "
                "and '_' (and not start with '-' or '_'); rename it",
                file=file,
                key=f"{prefix}services",
            )
        variable = schema.env_name(name)
        if variable in seen:
            raise ConfigError(
                f"services {seen[variable]!r} and {name!r} would both set {variable}_URL; "
                "rename one",
                file=file,
                key=f"{prefix}services",
            )
        seen[variable] = name


def _check_dependencies(services: Mapping[str, ServiceSpec], file: Path) -> None:
    for name, spec in services.items():
        for dep in spec.depends_on:
            if dep == name:
                raise ConfigError("depends on itself", file=file, service=name, key="depends_on")
            if dep not in services:
                raise ConfigError(
                    f"depends on unknown service '{dep}' (known: {', '.join(services)})",
                    file=file,
                    service=name,
                    key="depends_on",
                )


def _start_order(services: Mapping[str, ServiceSpec], file: Path) -> list[str]:
    """Dependencies first, otherwise the file's order (what `check` shows)."""
    sorter = graphlib.TopologicalSorter({n: spec.depends_on for n, spec in services.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))  # graphlib walks it from dependency to dependent
        raise ConfigError(
            f"dependency cycle: {' -> '.join(cycle)}; remove one of these depends_on entries",
            file=file,
            service=cycle[0],
            key="depends_on",
        ) from None
    position = {name: i for i, name in enumerate(services)}
    order: list[str] = []
    ready: list[str] = []
    while sorter.is_active():
        ready = sorted([*ready, *sorter.get_ready()], key=position.__getitem__)
        order.append(ready.pop(0))
        sorter.done(order[-1])
    return order


# Keys whose templates may name less than a service's other values may.
_OWNERS: Mapping[str, templates.Owner] = {
    "url": "url",
    "user": "identity",
    "password": "identity",
    "database": "identity",
}


def _check_templates(
    name: str,
    spec: ServiceSpec,
    services: Mapping[str, ServiceSpec],
    file: Path,
    environ: Mapping[str, str],
) -> None:
    has_port = spec.port is not None
    postgres = [n for n, s in services.items() if s.kind == "postgres"]
    for key, template in spec.templated():
        scope = templates.Scope(
            services=services,
            environ=environ,
            port=has_port,
            url=has_port or spec.url is not None,
            owner=_OWNERS.get(key, "service"),
            postgres=postgres,
        )
        with templates.config_error(file=file, service=name, key=key):
            templates.check(template, scope)
