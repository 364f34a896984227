"""The tests' images (images.py): keyed by what goes into them, built once per machine,
by one process at a time, and a missing engine said in the missing-program wording."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import images

pytestmark = pytest.mark.conductor


def test_the_key_follows_what_goes_into_the_root_filesystem() -> None:
    assert images.REDIS.key == replace(images.REDIS, version=9, changes=()).key
    assert images.REDIS.key != replace(images.REDIS, packages=("redis-server", "curl")).key
    assert (
        images.POSTGRES.key
        != replace(
            images.POSTGRES, files={"/usr/local/bin/start-postgres": ("#!/bin/sh\n", 0o755)}
        ).key
    )


def test_without_podman_the_skip_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert images.problem() == "not installed: podman (apt-get install podman runc mmdebstrap)"
    with pytest.raises(images.Unavailable, match=r"^not installed: podman "):
        images.ensure(images.REDIS)


@pytest.fixture
def podman_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with podman and the runtime it calls, but no mmdebstrap: a build would fail."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in ("podman", "runc", "conmon"):
        found = subprocess.run(
            ["sh", "-c", f"PATH=$PATH:/usr/sbin:/usr/libexec/podman command -v {program}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found:
            (folder / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_a_built_image_is_used_again_without_building(redis_image: str, podman_only: Path) -> None:
    assert images.built_key(redis_image) == images.REDIS.key
    assert images.ensure(images.REDIS) == redis_image  # no mmdebstrap on PATH: not rebuilt


@pytest.fixture
def lookalike_recipe(redis_image: str) -> Iterator[images.Recipe]:
    recipe = images.Recipe(f"conductor-test-lock-{uuid.uuid4().hex[:12]}", 1, ("hello",), ())
    yield recipe
    subprocess.run(
        ["podman", "image", "rm", "--force", recipe.image],
        capture_output=True,
        env=images.engine_env(),
        check=False,
    )


def test_a_process_that_waited_for_the_lock_uses_the_image_built_meanwhile(
    redis_image: str,
    lookalike_recipe: images.Recipe,
    podman_only: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two test processes needing one missing image: the second waits on the lock and
    then finds the image the first built; it does not build it again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = images.cache_dir()
    folder.mkdir(parents=True)
    result: list[object] = []
    with images._locked(folder / f"{lookalike_recipe.name}.lock", 10):
        waiter = threading.Thread(
            target=lambda: result.append(_ensure_or_error(lookalike_recipe)), daemon=True
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()
        assert not result
        _build_like_the_other_process(redis_image, lookalike_recipe)
    waiter.join(60)
    assert result == [lookalike_recipe.image]


def _ensure_or_error(recipe: images.Recipe) -> object:
    try:
        return images.ensure(recipe)
    except images.Unavailable as exc:
        return exc


def _build_like_the_other_process(base: str, recipe: images.Recipe) -> None:
    """An image under the recipe's name and key (committed from the redis image: quick)."""
    env = images.engine_env()
    made = subprocess.run(
        ["podman", "create", base, "true"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    try:
        subprocess.run(
            [
                "podman",
                "commit",
                "--quiet",
                "--change",
                f"LABEL {images.LABEL}={recipe.key}",
                made,
                recipe.image,
            ],
            capture_output=True,
            env=env,
            check=True,
        )
    finally:
        subprocess.run(["podman", "rm", made], capture_output=True, env=env, check=False)


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_missing_engine_skips_and_under_ci_fails(
    ci: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where .ci/run set the machine up, a missing engine is a broken setup, not a skip."""
    import conftest

    monkeypatch.setenv("PATH", str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match=r"^not installed: podman "):
            conftest._image(images.REDIS)
    else:
        monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.fail.Exception, match=r"under CI the machine setup in \.ci/run"):
            conftest._image(images.REDIS)
