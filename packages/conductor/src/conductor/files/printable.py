"""The one escaping of control characters, for text conductor shows that it did not
write: a config value quoted in an error, a service's line in the failure tail and in
report.html. A service's ESC, BEL or OSC sequence shown raw would clear the user's
screen or retitle their window; a newline or NUL would break a one-line error."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with every character Python does not call printable (C0 and C1 controls,
    DEL, line and paragraph separators) written as its escape: ESC is `\\x1b`."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
