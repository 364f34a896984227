"""Fixtures for conductor's tests; the helpers they use are in support.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import typing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import images
from support import PY, Conductor, Containers, Up, write_config

# pytest's own fixture for testing plugins: conductor's pytest plugin is tested with it.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_CACHE_HOME for conductors under test: the PostgreSQL template cache is built
    once per session here, never in the user's own ~/.cache."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture
def conductor(tmp_path: Path, shared_cache: Path) -> Iterator[Conductor]:
    runner = Conductor(tmp_path, f"test-{uuid.uuid4().hex}")
    runner.env["XDG_CACHE_HOME"] = str(shared_cache)
    yield runner
    left = runner.mine()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    assert not left, f"processes left behind: {[p.pid for p in left]}"
    if runner.engine_calls is not None:  # a docker variant (support.use_engine)
        assert runner.engine_calls.exists(), "conductor never ran docker: this proved nothing"


@pytest.fixture
def config(tmp_path: Path) -> Callable[..., Path]:
    def make(services: dict[str, dict[str, object]], **top: object) -> Path:
        top.setdefault("logs_dir", "logs")
        return write_config(tmp_path / "conductor.toml", services, **top)

    return make


@pytest.fixture
def up(conductor: Conductor) -> Iterator[Callable[..., Up]]:
    """Start a `conductor up` (its pid is the test's own); stopped with Ctrl-C after."""
    started: list[Up] = []

    def start(config: Path, *services: str) -> Up:
        started.append(Up(conductor, config, *services))
        return started[-1]

    yield start
    for one in started:
        one.stop()


SLEEPER = "import time; print('up', flush=True); time.sleep(120)"


@pytest.fixture
def bystander() -> Iterator[Callable[..., psutil.Popen]]:
    """Start processes this test owns, tracked by pid (victims conductor must leave
    alone, or decoys carrying a mark); all are killed at the end. `session=True`: in a
    session and group of its own. `code` prints 'up' once it runs."""
    started: list[psutil.Popen] = []
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}

    def start(
        *, session: bool = False, env: dict[str, str] | None = None, code: str = SLEEPER
    ) -> psutil.Popen:
        proc = psutil.Popen(
            [PY, "-c", code],
            env={**clean_env, **(env or {})},
            stdout=subprocess.PIPE,
            start_new_session=session,
        )
        started.append(proc)
        # Until exec, /proc/PID/environ is still ours, not the environment we gave.
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(psutil.Error):
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _unavailable(exc: images.Unavailable) -> None:
    """Without an engine that can run the tests' images, a test skips in the
    missing-program wording; under CI, where .ci/run sets the machine up, it fails."""
    if os.environ.get("CI"):
        pytest.fail(f"{exc} (under CI the machine setup in .ci/run provides it)")
    pytest.skip(str(exc))


def _image(recipe: images.Recipe, engine: images.TestEngine = images.PODMAN) -> str:
    """The tests' image for `recipe` on `engine`, built here once per machine."""
    images.use_test_engine()
    try:
        return images.ensure(recipe, engine)
    except images.Unavailable as exc:
        _unavailable(exc)
        raise


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[images.TestEngine]:
    """docker for this worker's tests: a daemon that answers, else podman's Docker API
    standing in (see images.docker_engine), with the tests' images in it."""
    if shutil.which("docker") is None:  # skipped with the reason, under CI too (issue 20)
        pytest.skip(images.NEEDS_DOCKER)
    try:
        with images.docker_engine(tmp_path_factory.mktemp("docker")) as engine:
            if engine.env:  # podman's API: its images are podman's own
                _image(images.REDIS)
            yield engine
    except images.Unavailable as exc:
        _unavailable(exc)


@pytest.fixture
def container_engine(request: pytest.FixtureRequest) -> images.TestEngine:
    """The engine a container test runs on: podman, or docker where a test is
    parametrized over both (support.BOTH_ENGINES): one code path for the two."""
    if getattr(request, "param", "podman") == "docker":
        return typing.cast(images.TestEngine, request.getfixturevalue("docker"))
    return images.PODMAN


@pytest.fixture
def redis_image(container_engine: images.TestEngine) -> str:
    return _image(images.REDIS, container_engine)


@pytest.fixture(scope="session")
def postgres_image() -> str:
    return _image(images.POSTGRES)


@pytest.fixture
def containers(container_engine: images.TestEngine) -> Iterator[Containers]:
    """The containers this test makes, removed at its end (tracked by id and run label)."""
    tracked = Containers(container_engine)
    yield tracked
    tracked.remove_all()
