"""The Genesis stack with its database and cache in containers, as the team this project
serves ran them (issue 20, item 8): pyproject's [tool.conductor], with `db` a PostgreSQL
container and `cache` a redis one, each from an image built here from Debian's packages
(packages/conductor/tests/images.py). Every other service, and every reference to these
two, is pyproject's own: the variant is derived, never a second copy to keep in step.
Unlike pyproject's, the two are not optional (this stack is the proof that containers
work), and the backend's database is the container server's own `postgres` database
(the image makes no other; the backend's migrations create its tables there).

    python -m tools.container_stack POSTGRES_IMAGE REDIS_IMAGE OUT.toml
        writes the variant (at the repo's root: its relative paths are pyproject's)

Exit 0 once OUT.toml is written; 2, with one line naming the file and what to do, when
the arguments are wrong, pyproject.toml is missing or malformed or has no [tool.conductor]
with services db and cache, or OUT.toml cannot be written.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
# The container's own password, for this throwaway test database only: it reaches the
# container through the engine's environment (`-e NAME`), never a command line.
PASSWORD = "e2e-containers-only"


def services(postgres_image: str, redis_image: str) -> dict[str, dict[str, Any]]:
    """`db` and `cache` as containers, with the URLs the rest of the stack reads."""
    return {
        "db": {
            "kind": "container",
            "image": postgres_image,
            "container_port": 5432,
            "port": "auto",
            "env": {"POSTGRES_PASSWORD": PASSWORD},
            "url": f"postgresql://postgres:{PASSWORD}@{{host}}:{{port}}/postgres",
            "ready": {"log": "database system is ready to accept connections"},
            "ready_timeout": 60,
            "stop_timeout": 10,
        },
        "cache": {
            "kind": "container",
            "image": redis_image,
            "command": [
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            "container_port": 6379,
            "port": "auto",
            "url": "redis://{host}:{port}/0",
            "ready": {"log": "Ready to accept connections"},
        },
    }


def variant(
    postgres_image: str, redis_image: str, pyproject: Path = ROOT / "pyproject.toml"
) -> str:
    """pyproject's stack, its db and cache replaced by containers, as a conductor.toml;
    Unusable (its one line) when pyproject has no such stack."""
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Unusable(f"{pyproject}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Unusable(f"{pyproject}: is not valid TOML ({exc}); fix it") from None
    tool = document.get("tool")
    stack = tool.get("conductor") if isinstance(tool, dict) else None
    if not isinstance(stack, dict) or not isinstance(stack.get("services"), dict):
        raise Unusable(f"{pyproject}: has no [tool.conductor] with services; add that stack")
    missing = [
        name for name in ("db", "cache") if not isinstance(stack["services"].get(name), dict)
    ]
    if missing:
        raise Unusable(
            f"{pyproject}: [tool.conductor] has no service {', '.join(missing)}, which "
            "this variant runs as containers; add it"
        )
    stack["services"].update(services(postgres_image, redis_image))
    header = "# Written by tools/container_stack.py from pyproject.toml's [tool.conductor].\n"
    written: str = tomli_w.dumps(stack)
    return header + written


class Unusable(Exception):
    """No variant can be written: its one line says which file, what is wrong, what to do."""


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(
            "usage: python -m tools.container_stack POSTGRES_IMAGE REDIS_IMAGE OUT.toml",
            file=sys.stderr,
        )
        return 2
    postgres_image, redis_image, out = argv
    try:
        text = variant(postgres_image, redis_image)
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise Unusable(f"{out}: cannot be written ({exc.strerror or exc})") from None
    except Unusable as exc:
        print(f"container_stack: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
