"""psutil, imported on first use: it costs ~40 ms, and most of a run's start (config,
plan, lock) never needs it; by the time a process needs inspecting, services are
already starting in parallel."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self.__name__)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)


psutil = LazyModule("psutil")
