"""`conductor clean` (and the watchdog, which stops leftovers the same way) on a dead
run's containers: those whose inspected labels carry the run's mark are stopped and
removed; a look-alike name, a forged entry or a live run's container is left alone."""

from __future__ import annotations

import json
import os
import typing
import uuid
from pathlib import Path

import pytest

from conductor import container
from conductor.config.schema import EngineName
from conductor.process.ownership import Mark
from support import BOTH_ENGINES, Conductor, Containers, use_engine, write_record

pytestmark = pytest.mark.conductor


def dead_runs_record(
    logs: Path, run_id: str, *refs: str, engine: str = "podman", **extra: object
) -> None:
    """A record as a conductor killed mid-run leaves it: its containers by name."""
    entries = [
        {
            "service": "cache",
            "engine": engine,
            "container": ref,
            "stop_signal": "SIGTERM",
            "stop_timeout": 5,
        }
        for ref in refs
    ]
    write_record(logs, {"run_id": run_id, "processes": [], "containers": entries, **extra})


def start_marked(containers: Containers, mark: Mark, image: str) -> str:
    """A container as conductor's run starts one (named and labelled for the run)."""
    request = container.RunRequest(
        mark=mark,
        service="cache",
        image=image,
        command=("redis-server", "--protected-mode", "no"),
        options=("--detach",),
        pull="never",
    )
    found = container.find_engine(typing.cast(EngineName, containers.on.name), os.environ)
    return containers.engine(*container.run_argv(found, request)[1:]).stdout.strip()


@pytest.fixture
def run_id(containers: Containers) -> str:
    found = uuid.uuid4().hex
    containers.run_ids.append(found)
    return found


@BOTH_ENGINES
def test_clean_removes_a_dead_runs_container(
    conductor: Conductor, tmp_path: Path, containers: Containers, redis_image: str, run_id: str
) -> None:
    use_engine(conductor, containers.on)
    logs = tmp_path / "logs"
    made = start_marked(containers, Mark(run_id, str(logs.resolve())), redis_image)
    name = container.container_name(Mark(run_id, ""), "cache")
    dead_runs_record(logs, run_id, name, engine=containers.on.name)
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert "cache (container conductor-" in result.out, result.out
    assert result.err.strip() == "", result.err
    assert not containers.exists(made)
    assert containers.of_run(run_id) == []


@BOTH_ENGINES
def test_clean_leaves_a_look_alike_and_a_forged_entry_alone(
    conductor: Conductor, tmp_path: Path, containers: Containers, redis_image: str, run_id: str
) -> None:
    """A container named as the run would name it, without its labels, and one labelled
    for the same run id but another logs folder: neither is the run's."""
    use_engine(conductor, containers.on)
    logs = tmp_path / "logs"
    name = container.container_name(Mark(run_id, ""), "cache")
    lookalike = containers.foreign("--name", name, redis_image, "sleep", "600")
    labels = container.labels(Mark(run_id, str(tmp_path / "other")), "cache")
    elsewhere = containers.foreign(
        *(f"--label={key}={value}" for key, value in labels.items()), redis_image, "sleep", "600"
    )
    dead_runs_record(logs, run_id, name, elsewhere, "--all", engine=containers.on.name)
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    assert "Traceback" not in result.text
    (line,) = result.err.strip().splitlines()
    assert line.count("does not carry this run's labels") == 2, line
    assert "container entry" in line
    assert "is malformed" in line
    for ref in (lookalike, elsewhere):
        assert containers.exists(ref)
        state = containers.engine("container", "inspect", "--format", "{{.State.Running}}", ref)
        assert state.stdout.strip() == "true"


def test_clean_never_touches_a_live_runs_container(
    conductor: Conductor, config, tmp_path: Path, containers: Containers, redis_image: str, up
) -> None:
    """A live run holds its folder's lock: clean reads nothing there."""
    from support import fake

    stack = up(config({"web": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}}))
    run_id = stack.record["run_id"]
    containers.run_ids.append(run_id)
    live = start_marked(containers, Mark(run_id, str(stack.logs.resolve())), redis_image)
    record = json.loads((stack.logs / ".conductor-run.json").read_text())
    assert record["run_id"] == run_id
    result = conductor.run("clean", "--config", str(stack.config))
    assert result.code == 2, result.text
    assert "is still in use by a running conductor" in result.err
    assert containers.exists(live)
    assert stack.alive()


def test_the_record_holds_a_container_until_teardown_forgets_it(tmp_path: Path) -> None:
    """What a run writes (RunDir.add_container) is what clean and the watchdog read."""
    import signal

    from conductor.rundir.run_record import RunDir

    run = RunDir(tmp_path)
    mark = Mark(uuid.uuid4().hex, str(tmp_path))
    run.begin(mark)
    name = container.container_name(mark, "cache")
    run.add_container("cache", "podman", name, signal.SIGINT, 7.5)
    (entry,) = run.read().containers
    assert (entry.service, entry.engine, entry.ref) == ("cache", "podman", name)
    assert (entry.rule.signal, entry.rule.grace) == (signal.SIGINT, 7.5)
    assert run.read().problems == []
    run.forget_container(name)
    assert run.read().containers == []


def test_a_record_names_an_engine_never_a_program(conductor: Conductor, tmp_path: Path) -> None:
    """A forged engine (a path to run) is refused in the warning line, never executed."""
    logs = tmp_path / "logs"
    ran = tmp_path / "ran"
    program = tmp_path / "engine"
    program.write_text(f"#!/bin/sh\ntouch {ran}\n")
    program.chmod(0o755)
    entry = {"service": "cache", "engine": str(program), "container": "conductor-x-cache"}
    write_record(logs, {"run_id": uuid.uuid4().hex, "processes": [], "containers": [entry]})
    result = conductor.run("clean", "--logs-dir", "logs")
    assert result.code == 0, result.text
    (line,) = result.err.strip().splitlines()
    assert "is not a container engine conductor knows" in line
    assert not ran.exists()
