"""The conductor CLI's own process as Linux child subreaper.

A daemon that double-forks and clears its environment escapes both its service's
group and the run's mark; as subreaper, conductor still adopts it when its parent
dies. That is safe only in a process whose every descendant belongs to the run: the
`conductor` command, started with no children of its own. A library caller
(`run_command()`, `Stack`) has children of its own, so it never becomes one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from conductor.process import portable

if TYPE_CHECKING:
    import psutil
else:
    from conductor.process.lazy_psutil import psutil


class Subreaper:
    """Made by `claim()` in cli.main only; `release()` puts the process back as it was."""

    def __init__(self, *, active: bool, was: bool, sweeps_unmarked: bool) -> None:
        self.active = active
        self.was = was
        # Unmarked descendants are the run's only when the process had no child before
        # it: a caller that `exec`s conductor may hand it children of its own.
        self.sweeps_unmarked = sweeps_unmarked

    @classmethod
    def claim(cls) -> Subreaper:
        was = portable.is_subreaper()
        active = was or portable.set_subreaper(True)
        alone = not portable.child_pids(os.getpid())
        return cls(active=active, was=was, sweeps_unmarked=active and alone)

    def adopted(self, exclude: Collection[int] = ()) -> list[psutil.Process]:
        """Every live descendant of this process not in `exclude`: each one was started
        by the run (see `sweeps_unmarked`), marked or not."""
        if not self.sweeps_unmarked:
            return []
        with contextlib.suppress(psutil.Error):
            return [
                child
                for child in psutil.Process(os.getpid()).children(recursive=True)
                if child.pid not in exclude
            ]
        return []

    def release(self) -> None:
        if self.active and not self.was:
            portable.set_subreaper(False)
            self.active = False
