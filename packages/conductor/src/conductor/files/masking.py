"""Passwords never reach conductor's own output.

Everything conductor writes for people and CI artifacts - the console, conductor.log,
summary.json, report.html and `up`'s list of URLs - passes through `mask()`. It hides
the password part of any URL (`scheme://user:***@host`), and every password the plan
knows (`hide()`), wherever it stands: in a readiness command, in a log tail, in an
error. A password that is also an ordinary word of the output (`postgres`) masks that
word too; that is the price of never printing it.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

_PASSWORD_IN_URL = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")
_hidden: set[str] = set()
_pattern: re.Pattern[str] | None = None


def hide(secret: str) -> None:
    """Mask `secret` from now on, as written and as URLs, HTML and JSON escape it."""
    global _pattern
    forms = {secret, quote(secret, safe=""), html.escape(secret), json.dumps(secret)[1:-1]}
    if forms <= _hidden:
        return
    _hidden.update(form for form in forms if form)
    longest_first = sorted(_hidden, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(form) for form in longest_first))


def mask(text: str) -> str:
    """`text` with URL passwords and every hidden secret replaced by ***."""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return text if _pattern is None else _pattern.sub("***", text)


def mask_data(value: object) -> object:
    """Every string in a JSON-like structure masked (summary.json's data)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: mask_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(item) for item in value]
    return value
