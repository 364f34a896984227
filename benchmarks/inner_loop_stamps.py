"""Timestamps from inside a pytest run, for bench_inner_loop.py (loaded with -p).

Appends `NAME SECONDS` lines to the file named by BENCH_STAMPS:

- `configured` (an epoch) once every pytest_configure has run: the stack is started or
  attached to, the tests can begin;
- `finished` (an epoch) when the session ends: the tests are done, teardown begins;
- `call` (a duration), once per test: its call phase, without its fixtures' setup and
  teardown; their sum is the tests' own time;
- `conductor` (a duration): the time spent in conductor's own pytest_configure and
  pytest_unconfigure (finding, attaching to or starting the stack, importing what that
  needs, and stopping it). `-p` imports this module before pytest registers the plugins
  of entry points, so it can wrap conductor's two hooks before pluggy takes them.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

import conductor.pytest_plugin.plugin as conductor_plugin


def _stamp(name: str, value: float) -> None:
    path = os.environ.get("BENCH_STAMPS")
    if path and not os.environ.get("PYTEST_XDIST_WORKER"):
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{name} {value!r}\n")


def _timed(hook: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hook)  # keeps pluggy's hookimpl marks and the argument names
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            _stamp("conductor", time.perf_counter() - began)

    return timed


conductor_plugin.pytest_configure = _timed(conductor_plugin.pytest_configure)
conductor_plugin.pytest_unconfigure = _timed(conductor_plugin.pytest_unconfigure)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    _stamp("configured", time.time())


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _stamp("finished", time.time())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _stamp("call", report.duration)
