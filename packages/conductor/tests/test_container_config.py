"""kind = "container" before anything starts: the engine is found (or the service
skipped when optional), and a missing engine is one line with exit 2."""

from __future__ import annotations

import json

import pytest

from support import PY

pytestmark = pytest.mark.conductor

CACHE = {"kind": "container", "image": "localhost/conductor-test-redis:1", "pull": "never"}


def run(conductor, *extra: str):
    return conductor.run("run", "--config", "conductor.toml", *extra, "--", PY, "-c", "pass")


def test_an_unknown_engine_in_the_environment_is_one_line(conductor, config, tmp_path):
    config({"cache": CACHE})
    conductor.env["CONDUCTOR_CONTAINER_ENGINE"] = "lxc"
    result = run(conductor)
    assert result.code == 2, result.text
    assert "Traceback" not in result.text
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert f"{tmp_path / 'conductor.toml'}, service 'cache', key 'kind'" in result.err
    assert "CONDUCTOR_CONTAINER_ENGINE='lxc' is not a container engine" in result.err


@pytest.mark.parametrize("named", [None, "podman"])
def test_a_missing_engine_is_exit_2_naming_what_to_install(conductor, config, tmp_path, named):
    config({"cache": {**CACHE, **({"engine": named} if named else {})}})
    empty = tmp_path / "no-engines"
    empty.mkdir()
    conductor.env["PATH"] = str(empty)
    conductor.env.pop("CONDUCTOR_CONTAINER_ENGINE", None)
    result = run(conductor)
    assert result.code == 2, result.text
    assert len(result.err.strip().splitlines()) == 1, result.err
    if named:
        assert "key 'engine'" in result.err
        assert "container engine 'podman' was not found on PATH; install it" in result.err
    else:
        assert "key 'kind'" in result.err
        assert "neither podman nor docker is on PATH; install podman" in result.err


def test_an_optional_container_without_an_engine_is_skipped(conductor, config, tmp_path):
    config({"cache": {**CACHE, "optional": True}})
    empty = tmp_path / "no-engines"
    empty.mkdir()
    conductor.env["PATH"] = str(empty)
    conductor.env.pop("CONDUCTOR_CONTAINER_ENGINE", None)
    result = run(conductor)
    assert result.code == 0, result.text
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["services"]["cache"]["status"] == "skipped", summary
