"""`{name}` placeholders in commands, env values, cwd and urls.

Names are checked when the configuration is loaded, so a typo ends the run before
anything starts; values are filled in only once every port is settled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_SERVICE_ATTRS = ("host", "port", "url")
SIMPLE_NAMES = ("python", "root", "host", "port", "url", "logs_dir")


class TemplateError(ValueError):
    """A placeholder that cannot be filled; the message says which and why."""


def fields(template: str) -> Iterator[str]:
    """The placeholder names in `template`, in order (escaped braces are skipped)."""
    for match in _FIELD.finditer(template):
        if match.group(1) is not None:
            yield match.group(1).strip()
    if re.search(r"(?<!\{)\{(?!\{)[^}]*$", _FIELD.sub("", template)):
        raise TemplateError("has an unclosed '{' (write '{{' for a literal brace)")


def check_name(name: str, services: Mapping[str, object]) -> None:
    """Raise TemplateError unless `name` is one conductor knows how to fill."""
    if name in SIMPLE_NAMES:
        return
    parts = name.split(".")
    if parts[0] == "env" and len(parts) == 2 and parts[1]:
        return
    if parts[0] == "services" and len(parts) == 3:
        service, attr = parts[1], parts[2]
        if service not in services:
            known = ", ".join(sorted(services)) or "none"
            raise TemplateError(f"'{{{name}}}' names unknown service '{service}' (known: {known})")
        if attr not in _SERVICE_ATTRS:
            raise TemplateError(
                f"'{{{name}}}': a service offers only {', '.join(_SERVICE_ATTRS)}, not '{attr}'"
            )
        return
    raise TemplateError(
        f"unknown placeholder '{{{name}}}'; known: {{python}}, {{root}}, {{host}}, {{port}}, "
        "{url}, {logs_dir}, {env.NAME}, {services.NAME.host|port|url}"
    )


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
        try:
            return context[name]
        except KeyError:
            if name.startswith("env."):
                raise TemplateError(
                    f"uses '{{{name}}}' but environment variable {name[4:]} is not set"
                ) from None
            raise TemplateError(f"'{{{name}}}' has no value here") from None

    return _FIELD.sub(replace, template)
