"""Catching SIGINT and SIGTERM for the length of a run, and putting things back after."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class CaptureSignals:
    """Route SIGINT/SIGTERM to `callback` on the event loop; restore the previous
    handlers on exit, as uvicorn's server does."""

    def __init__(self, callback: Callable[[signal.Signals], None]) -> None:
        self.callback = callback
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> CaptureSignals:
        loop = asyncio.get_running_loop()
        for sig in HANDLED:
            try:
                self._previous[sig] = signal.getsignal(sig)
                loop.add_signal_handler(sig, self.callback, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, non-main thread
                self._previous.pop(sig, None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._previous.items():
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
