"""Proof that no browser process outlives the session, without waiting on zombies.

Two ways to know the browser's processes: the children this process started since
the session began (Playwright's driver) with their descendants right after Chromium
starts (Chromium and its helpers), and a marker in Chromium's environment, which every
helper inherits, also those that double-fork away and are adopted by conductor (the
subreaper) before anyone could list them. Processes that were already running (a
stack the tests started themselves, its database's connections) are not the browser's.

A helper that has exited but is not yet reaped by its adoptive parent is a zombie:
dead, holding nothing, so it counts as gone at once. Waiting for its pid to vanish
waits for conductor's teardown instead (psutil.wait_procs did that: 10 s every run).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import psutil

MARKER = "GENESIS_BROWSER_SESSION"


class BrowserProcesses:
    """The processes of one browser session: noted after launch, or carrying its marker."""

    def __init__(self) -> None:
        self.marker = uuid.uuid4().hex
        self._seen: set[psutil.Process] = set()
        self._before = set(psutil.Process().children())

    def environment(self) -> dict[str, str]:
        """Chromium's environment: ours, plus this session's marker."""
        return {**os.environ, MARKER: self.marker}

    def note(self, root: psutil.Process | None = None) -> None:
        """Remember the children `root` (default: this process) started since this
        object was made, and their descendants as they are now."""
        for child in (root or psutil.Process()).children():
            if child not in self._before:
                self._seen.add(child)
                self._seen.update(child.children(recursive=True))

    def running(self) -> list[psutil.Process]:
        """Those still running: not exited, not a zombie."""
        candidates = self._seen | set(_marked(self.marker))
        return sorted((p for p in candidates if _running(p)), key=lambda p: p.pid)

    async def outliving(self, timeout: float) -> list[str]:
        """Those still running after up to `timeout` seconds, described; returns as
        soon as none is left."""
        deadline = time.monotonic() + timeout
        while True:
            alive = self.running()
            if not alive or time.monotonic() >= deadline:
                return [_describe(proc) for proc in alive]
            await asyncio.sleep(0.05)


def _marked(value: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == value:
                found.append(proc)
        except psutil.Error:  # gone, a zombie (no environment left), or not ours to read
            continue
    return found


def _running(proc: psutil.Process) -> bool:
    try:
        # is_running() also compares the start time, so a recycled pid is not ours.
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return f"pid {proc.pid}"
