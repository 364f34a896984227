"""`.env` files (`env_file`): read with python-dotenv, as docker compose and most
FastAPI templates write them, so settings are written once for the app and its tests."""

from __future__ import annotations

from pathlib import Path

from conductor.errors import ConfigError


def read(
    paths: str | tuple[str, ...],
    *,
    root: Path,
    file: Path,
    service: str | None = None,
    key: str = "env_file",
) -> dict[str, str]:
    """The variables of `paths` (relative to `root`), later files winning; a file that
    is missing or unreadable is a ConfigError naming it. python-dotenv is imported only
    here: a configuration without env_file never pays for it."""
    listed = (paths,) if isinstance(paths, str) else paths
    if not listed:
        return {}
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    for i, written in enumerate(listed):
        where = key if isinstance(paths, str) else f"{key}[{i}]"
        try:
            path = (root / written).resolve()
            if not path.is_file():
                raise ConfigError(
                    f"{path} does not exist; create it or fix the path",
                    file=file,
                    service=service,
                    key=where,
                )
            with path.open(encoding="utf-8") as stream:
                read_values = dotenv_values(stream=stream, interpolate=True)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read {written!r}: {exc}", file=file, service=service, key=where
            ) from None
        for name, value in read_values.items():
            if "\0" in name or "=" in name or not name or "\0" in (value or ""):
                raise ConfigError(
                    f"{written}: variable {name!r} has a NUL byte or '=' in it",
                    file=file,
                    service=service,
                    key=where,
                )
            values[name] = value or ""
    return values
