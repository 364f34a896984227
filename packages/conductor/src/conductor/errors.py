"""The errors conductor turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations

from pathlib import Path

from conductor.files.printable import printable

EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_SERVICE_FAILED = 125
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class ConductorError(Exception):
    """A failure the user can act on; `str()` is the whole message."""

    exit_code = EXIT_USAGE


class ConfigError(ConductorError):
    """Bad configuration: names the file, the service and the key, so it can be fixed."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        service: str | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file
        self.service = service
        self.key = key
        self.message = message
        where = []
        if file is not None:
            where.append(str(file))
        if service is not None:
            where.append(f"service '{service}'")
        if key is not None:
            where.append(f"key '{key}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(one_line(prefix + message))


def one_line(text: str) -> str:
    """`text` with control characters (a newline or NUL in a key or value quoted from
    the file) escaped, so that the message stays one line."""
    return printable(text)


class LogsDirBusy(ConductorError):
    """Another live conductor owns this logs folder; `holder` is the pid its lock file
    names (None when it names none)."""

    def __init__(self, message: str, *, folder: Path, holder: int | None) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(message)


class ServiceFailed(ConductorError):
    """A service exited or missed its readiness deadline before it was ready."""

    exit_code = EXIT_SERVICE_FAILED

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"service '{service}' {reason}")
