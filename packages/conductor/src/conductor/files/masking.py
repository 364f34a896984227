"""Passwords never reach conductor's own output, and conductor's own words stay whole.

A secret is masked where it occurs in DATA, before that data is cut or rendered: in a
service's log lines (the failure tail, report.html's tails, `--show-logs`, a fail.log
line quoted), in a URL's userinfo, in a readiness command, in COMMAND's words, in what a
failing program said. conductor's own text around the data - keywords (`kind=postgres`),
URL schemes, paths, report.html's markup - is never masked: a password such as
`postgres` or `rect` would otherwise eat them (issue 18 item 2).

Masking comes before cutting. A cut (the 64 KiB pieces of `--show-logs`, the start of
the failure tail's block, a line cut short) is moved by `safe_cut()` so that it never
falls inside a secret; each piece is then masked on its own and shows no part of one.

    mask(text)        a data string: URL passwords and every hidden secret -> ***
    mask_bytes(data)  the same for a service's bytes
    mask_url(url)     a URL: its userinfo password (and a hidden secret in its query)
    safe_cut(data, i) a cut position <= i that splits no secret
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

# `scheme://user:PASSWORD@`; both parts bounded, so a match is at most _URL_REACH bytes
# and looking that far around a cut is enough to see one that straddles it.
_URL_PART = 255
_PASSWORD_IN_URL = re.compile(rf"(://[^/:@\s]{{0,{_URL_PART}}}:)[^/@\s]{{1,{_URL_PART}}}@")
_PASSWORD_IN_URL_BYTES = re.compile(_PASSWORD_IN_URL.pattern.encode())
_URL_REACH = 3 + _URL_PART + 1 + _URL_PART + 1
_hidden: set[str] = set()
_pattern: re.Pattern[str] | None = None
_pattern_bytes: re.Pattern[bytes] | None = None
_secrets: re.Pattern[bytes] = _PASSWORD_IN_URL_BYTES  # what no cut may split: both kinds
_reach = _URL_REACH


def hide(secret: str) -> None:
    """Mask `secret` from now on, as written and as URLs, HTML and JSON escape it."""
    global _pattern, _pattern_bytes, _secrets, _reach
    import html  # here, not with the module: every run loads masking, few hide a secret

    forms = {secret, quote(secret, safe=""), html.escape(secret), json.dumps(secret)[1:-1]}
    forms.discard("")
    if forms <= _hidden:
        return
    _hidden.update(forms)
    longest_first = sorted(_hidden, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(form) for form in longest_first))
    _pattern_bytes = re.compile(b"|".join(re.escape(form.encode()) for form in longest_first))
    _secrets = re.compile(_pattern_bytes.pattern + b"|" + _PASSWORD_IN_URL_BYTES.pattern)
    _reach = max(_URL_REACH, *(len(form.encode()) for form in _hidden))


def reach() -> int:
    """How far around a cut a secret that straddles it can begin or end (bytes)."""
    return _reach


def mask(text: str) -> str:
    """A data string with URL passwords and every hidden secret replaced by ***."""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return text if _pattern is None else _pattern.sub("***", text)


def mask_bytes(data: bytes) -> bytes:
    """A service's bytes with URL passwords and every hidden secret replaced by ***."""
    data = _PASSWORD_IN_URL_BYTES.sub(rb"\1***@", data)
    return data if _pattern_bytes is None else _pattern_bytes.sub(b"***", data)


def mask_url(url: str) -> str:
    """A URL with the password of its userinfo masked, and a hidden secret in its query
    or fragment; its scheme, user, host, port and path are left as they are."""
    url = _PASSWORD_IN_URL.sub(r"\1***@", url, count=1)
    query = re.search(r"[?#]", url)
    if query is None or _pattern is None:
        return url
    return url[: query.start()] + _pattern.sub("***", url[query.start() :])


def safe_cut(data: bytes, at: int) -> int:
    """Where to cut `data` near `at` so that no secret (hidden, or a URL's password with
    its `://user:` before it) is split: `at`, or the start of the secret that straddles
    it, or that secret's end when it starts the data. `data` must hold `reach()` bytes
    past `at` (or all there is) for a straddling secret to be seen."""
    if at <= 0 or at >= len(data):
        return at
    for found in _secrets.finditer(data, max(at - _reach, 0), at + _reach):
        if found.start() < at < found.end():
            return found.start() if found.start() > 0 else found.end()
        if found.start() >= at:
            break
    return at
