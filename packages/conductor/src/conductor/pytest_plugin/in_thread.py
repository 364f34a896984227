"""An async context manager held open across synchronous code, on an event loop of its
own in a thread: how pytest's synchronous configure/unconfigure hooks keep a Stack (or
a database session) for a whole run.

    with HeldInThread(lambda: Stack(config, ["db"]), "conductor-stack") as stack:
        ...                                  # the services run meanwhile
    # stopped here, whatever happened in between

Ctrl-C while it starts cancels the start (the Stack stops what already started); Ctrl-C
while it stops calls `on_interrupt` (for a Stack: kill everything now) and still waits,
so the interpreter never exits with the thread's work half done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, TypeVar

from conductor.process.signals import leave_to_main_thread

T = TypeVar("T")


class HeldInThread(Generic[T]):
    """Enter `enter()` on a thread's own loop; `__exit__` leaves it there."""

    def __init__(
        self,
        enter: Callable[[], AbstractAsyncContextManager[T]],
        name: str,
        *,
        on_interrupt: Callable[[], None] | None = None,
    ) -> None:
        self._enter = enter
        self._on_interrupt = on_interrupt
        self._value: T | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # set before the loop may exist: checked once entered
        self._exit_error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def __enter__(self) -> T:
        self._thread.start()
        try:
            self._ready.wait()
        except BaseException:  # Ctrl-C while starting: cancel the start, wait for it
            self._closing = True
            self._cancel()
            self._join()
            raise
        if self._error is not None:
            self._join()
            raise self._error
        return self._value  # type: ignore[return-value]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the context on its own loop and wait until it has; idempotent. An error
        raised while leaving is raised here."""
        if self._thread.is_alive():
            self.begin_close()
            self._join()
        self._closing = True
        error, self._exit_error = self._exit_error, None
        if error is not None:
            raise error

    def begin_close(self) -> None:
        """Start leaving the context without waiting for it (a signal handler's part:
        close() waits later). Under xdist, the controller's SIGTERM is followed by up to
        10 s of waiting for its workers; the stack's stop runs meanwhile, not after."""
        self._closing = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _cancel(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    def _join(self) -> None:
        """Wait for the thread; a Ctrl-C meanwhile hurries it up but never abandons it."""
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt:
                if self._on_interrupt is not None:
                    self._on_interrupt()

    def _main(self) -> None:
        leave_to_main_thread()  # and so do the loop's own helper threads, started here
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._task = asyncio.current_task()
        try:
            async with self._enter() as value:
                self._value = value
                self._ready.set()
                if not self._closing:
                    await self._stop.wait()
        except BaseException as exc:  # handed to the thread that waits for us
            if self._ready.is_set():
                self._exit_error = exc
            else:
                self._error = exc
        finally:
            self._ready.set()
