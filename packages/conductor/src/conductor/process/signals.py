"""Catching SIGINT and SIGTERM for the length of a run, and putting things back after;
and, for a loop held in a thread of its own, leaving them to the main thread."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
_CAN_MASK = hasattr(signal, "pthread_sigmask")  # not on Windows


def leave_to_main_thread() -> None:
    """Block SIGINT and SIGTERM in the calling thread (and the threads it starts).

    Both are process-directed: the kernel may give one to any thread that does not
    block it. Python runs handlers in the main thread only, so when another thread
    takes the signal, a main thread blocked in a system call (a test in time.sleep or
    a socket read) is not woken, and Ctrl-C waits for the call to end. Blocked here,
    the signal goes to the main thread. Children must not inherit this mask: see
    `child_mask()`."""
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def child_mask() -> dict[str, Any]:
    """Extra Popen arguments that give a child an unblocked mask when the spawning
    thread blocks SIGINT/SIGTERM. A blocked mask survives exec: the service would never
    see the SIGTERM that stops it and wait out its stop_timeout. Nothing extra (and the
    faster vfork path) from a thread that blocks neither, as the CLI's main thread."""
    if not _CAN_MASK or not set(HANDLED) & signal.pthread_sigmask(signal.SIG_BLOCK, []):
        return {}
    return {"preexec_fn": _unblock}


def _unblock() -> None:  # runs in the child between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


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
