"""The hook conftest files implement to ask for services by what the run selects."""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.hookspec
def pytest_conductor_services(config: pytest.Config) -> Sequence[str] | None:
    """Services this run needs besides --conductor-stack and the conductor_stack ini key.

    Called once, in the process that owns the run, before anything starts; every
    implementation's services are started. Only initial conftest files (the root's,
    and those of the paths on the command line) are loaded by then, so implement it in
    the top conftest.py of the tests, and choose by the selected paths (config.args).
    Mark the implementation `@pytest.hookimpl(optionalhook=True)`, so the conftest still
    loads where the plugin is disabled (-p no:conductor).
    """
