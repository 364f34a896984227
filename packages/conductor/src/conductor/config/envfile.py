"""`.env` files (`env_file`): read with python-dotenv, as docker compose and most
FastAPI templates write them, so settings are written once for the app and its tests."""

from __future__ import annotations

import collections
import io
import os
from pathlib import Path

from conductor.errors import ConfigError
from conductor.files import safe_io

_MAX_BYTES = 64 << 20  # far beyond any .env: a file that large is a mistake


def read(
    paths: str | tuple[str, ...],
    *,
    root: Path,
    file: Path,
    service: str | None = None,
    key: str = "env_file",
) -> dict[str, str]:
    """The variables of `paths` (relative to `root`), later files winning. A file that
    is missing, no plain file (a folder, a FIFO, a device: never opened to wait), not
    readable, or that has a line python-dotenv cannot parse is a ConfigError naming it
    (and the line). python-dotenv is imported only here: a configuration without
    env_file never pays for it."""
    listed = (paths,) if isinstance(paths, str) else paths
    values: dict[str, str] = {}
    for i, written in enumerate(listed):
        where = key if isinstance(paths, str) else f"{key}[{i}]"
        try:
            found = _read_one(root, written)
        except _Unreadable as exc:
            raise ConfigError(str(exc), file=file, service=service, key=where) from None
        for name, value in found.items():
            if "\0" in name or "=" in name or not name or "\0" in (value or ""):
                raise ConfigError(
                    f"{written}: variable {name!r} has a NUL byte or '=' in it",
                    file=file,
                    service=service,
                    key=where,
                )
            values[name] = value or ""
    return values


class _Unreadable(Exception):
    """Why one env_file cannot be read; `str()` says it, naming the file."""


def _read_one(root: Path, written: str) -> dict[str, str | None]:
    try:
        path = (root / written).resolve()
        text = safe_io.read_text(path, _MAX_BYTES)
    except FileNotFoundError:
        raise _Unreadable(f"{root / written} does not exist; create it or fix the path") from None
    except safe_io.NotPlain as exc:
        raise _Unreadable(f"{path}: {exc}; point it at a .env file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"cannot read {written!r}: {exc}") from None
    return _parse(text, path)


def _parse(text: str, path: Path) -> dict[str, str | None]:
    """What python-dotenv's dotenv_values(interpolate=True) gives, from its own parser
    and its own `${NAME}` expansion: each value sees the real environment under the
    file's values before it. dotenv_values copies both for every variable (16,000
    variables took 3.5 s); one layered view of them makes it linear. A line its parser
    cannot read ends the run (dotenv only logs it, naming no file), its text not shown:
    a .env line may hold a secret."""
    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables

    values: dict[str, str | None] = {}
    real: dict[str, str | None] = dict(os.environ)
    seen = collections.ChainMap(values, real)
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise _Unreadable(
                f"{path}:{binding.original.line}: python-dotenv cannot parse this line; "
                "write NAME=VALUE, or start it with # to make it a comment"
            )
        if binding.key is None:
            continue
        value = binding.value
        if value is not None:
            value = "".join(atom.resolve(seen) for atom in parse_variables(value))
        values[binding.key] = value
    return values
