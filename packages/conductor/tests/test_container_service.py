"""kind = "container" against real podman containers, from images built here from
Debian's packages (images.py): a container gets a process's guarantees (issue 20,
items 1-5 and 7). Every container a test's runs make is tracked by the run's label and
removed at its end; `podman ps -a` shows none afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import images
from support import (
    BOTH_ENGINES,
    PY,
    Conductor,
    Containers,
    gone,
    kill_conductor_and_its_watchdog,
    use_engine,
    wait_for,
    watchdog_pid,
    write_config,
)

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform != "linux", reason="the tests' engine is podman on Linux"),
]

SECRET = "Zq9-container-Sup3rS3cret"
# COMMAND: PING the cache through its published port, print the answer.
PING = (
    "import os, socket\n"
    "s = socket.create_connection((os.environ['CACHE_HOST'], int(os.environ['CACHE_PORT'])))\n"
    "s.sendall(b'PING\\r\\n'); print('ANSWER', s.recv(64))\n"
)
# COMMAND: write a file, then wait to be stopped.
WAIT = "import pathlib, sys, time\npathlib.Path(sys.argv[1]).write_text('go')\ntime.sleep(60)\n"


def cache(image: str, **more: object) -> dict[str, object]:
    return {
        "kind": "container",
        "image": image,
        "command": ["redis-server", "--save", "", "--protected-mode", "no"],
        "container_port": 6379,
        "port": "auto",
        "ready": {"tcp": True},
        "stop_timeout": 3,
        **more,
    }


@pytest.fixture
def engine_conductor(
    conductor: Conductor, container_engine: images.TestEngine, redis_image: str
) -> Conductor:
    return use_engine(conductor, container_engine)


def track(containers: Containers, logs: Path) -> str:
    """The run's id (from its summary or record), so its containers are removed."""
    for name in ("summary.json", ".conductor-run.json"):
        path = logs / name
        if path.exists():
            run_id = json.loads(path.read_text())["run_id"]
            containers.run_ids.append(run_id)
            return run_id
    raise AssertionError(f"no summary or record in {logs}")


def start_waiting(engine_conductor, tmp_path, redis_image, containers):
    """A run of one cache container with COMMAND waiting: conductor's process and the
    run's id (its containers tracked)."""
    write_config(tmp_path / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs")
    go = tmp_path / "go"
    proc = engine_conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", WAIT, str(go)
    )
    wait_for(go.exists, timeout=60, what="the command")
    return proc, track(containers, tmp_path / "logs")


@BOTH_ENGINES
def test_a_container_starts_answers_logs_and_is_removed(
    engine_conductor, tmp_path, redis_image, containers
):
    write_config(
        tmp_path / "conductor.toml",
        {"cache": cache(redis_image, env={"CACHE_SECRET": SECRET})},
        logs_dir="logs",
    )
    # The secret spelt in two halves, so COMMAND's own words never hold it.
    half = len(SECRET) // 2
    spy = (
        "import subprocess\n"
        f"secret = {SECRET[:half]!r} + {SECRET[half:]!r}\n"
        "listed = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True)\n"
        "print('SEEN', listed.stdout.count(secret))\n"
    )
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", PING + spy)
    logs = tmp_path / "logs"
    run_id = track(containers, logs)
    assert result.code == 0, result.text
    assert "ANSWER b'+PONG\\r\\n'" in result.out
    assert "SEEN 0" in result.out  # on no process's command line
    service = json.loads((logs / "summary.json").read_text())["services"]["cache"]
    assert service["image"] == redis_image
    assert service["engine"] == containers.on.name
    assert len(service["container"]) == 64
    assert service["outcome"] == "stopped"
    assert "Ready to accept connections" in (logs / "cache.log").read_text()
    for name in ("cache.log", "conductor.log", "summary.json", "report.html"):
        assert SECRET not in (logs / name).read_text(), name
    assert containers.of_run(run_id) == []  # stopped and removed
    # Removing it is a wait of teardown of its own, named in conductor.log.
    events = (logs / "conductor.log").read_text()
    engine = containers.on.name
    assert re.search(
        rf"cache: removed its container conductor-\S+ \({engine} rm --volumes\) in", events
    )


def test_a_container_that_exits_before_it_is_ready_is_125_with_its_tail(
    engine_conductor, tmp_path, redis_image, containers
):
    broken = cache(redis_image, command=["sh", "-c", "echo the-cause-is-here; exit 3"])
    write_config(tmp_path / "conductor.toml", {"cache": broken}, logs_dir="logs")
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    run_id = track(containers, tmp_path / "logs")
    assert result.code == 125, result.text
    assert "service 'cache' exited with status 3 before it was ready" in result.err
    assert "the-cause-is-here" in result.err
    assert containers.of_run(run_id) == []


def test_a_missing_image_names_the_image(engine_conductor, tmp_path, containers):
    missing = cache("localhost/conductor-no-such-image:0", pull="never")
    write_config(tmp_path / "conductor.toml", {"cache": missing}, logs_dir="logs")
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    track(containers, tmp_path / "logs")
    assert result.code == 125, result.text
    assert "localhost/conductor-no-such-image:0" in result.err


@BOTH_ENGINES
def test_a_container_that_dies_while_command_runs_fails_the_run(
    engine_conductor, tmp_path, redis_image, containers
):
    dying = cache(
        redis_image,
        command=["sh", "-c", "redis-server --save '' --protected-mode no & sleep 2; exit 7"],
    )
    write_config(tmp_path / "conductor.toml", {"cache": dying}, logs_dir="logs")
    go = tmp_path / "go"
    result = engine_conductor.run(
        "run", "--config", "conductor.toml", "--", PY, "-c", WAIT, str(go)
    )
    run_id = track(containers, tmp_path / "logs")
    assert go.exists(), result.text  # COMMAND ran
    assert result.code == 125, result.text
    assert "service 'cache' exited with status 7 while the command ran" in result.err
    assert containers.of_run(run_id) == []


@BOTH_ENGINES
def test_a_container_that_ignores_its_stop_signal_is_killed_after_stop_timeout(
    engine_conductor, tmp_path, redis_image, containers
):
    stubborn = cache(
        redis_image,
        command=["sh", "-c", "trap '' TERM; redis-server --save '' --protected-mode no & wait"],
        stop_timeout=1,
    )
    write_config(tmp_path / "conductor.toml", {"cache": stubborn}, logs_dir="logs")
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    run_id = track(containers, tmp_path / "logs")
    assert result.code == 0, result.text
    service = json.loads((tmp_path / "logs" / "summary.json").read_text())["services"]["cache"]
    assert service["outcome"] == "forced", service
    assert containers.of_run(run_id) == []


@BOTH_ENGINES
def test_sigkill_of_conductor_the_watchdog_removes_the_container(
    engine_conductor, tmp_path, redis_image, containers
):
    proc, run_id = start_waiting(engine_conductor, tmp_path, redis_image, containers)
    assert len(containers.of_run(run_id)) == 1
    watchdog = watchdog_pid(tmp_path / "logs")
    proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    wait_for(lambda: containers.of_run(run_id) == [], timeout=30, what="the container to go")
    # stop_timeout (3 s) + 1 s, with the engine's own calls on a loaded machine on top
    assert time.monotonic() - killed <= 3 + 1 + 3
    # It still logs what it did after the engine removed the container (CI's fixture
    # once found it at that, and called it left behind).
    wait_for(lambda: gone(watchdog), timeout=15, what="the watchdog to exit")


@BOTH_ENGINES
def test_clean_removes_the_container_of_a_run_whose_watchdog_died_too(
    engine_conductor, tmp_path, redis_image, containers
):
    proc, run_id = start_waiting(engine_conductor, tmp_path, redis_image, containers)
    kill_conductor_and_its_watchdog(proc, tmp_path / "logs")
    assert len(containers.of_run(run_id)) == 1
    result = engine_conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert "(container conductor-" in result.out, result.text
    assert containers.of_run(run_id) == []


@BOTH_ENGINES
def test_attach_proves_the_ups_container_by_its_labels(
    engine_conductor, tmp_path, redis_image, containers, up
):
    """--attach reuses an up's container only as the engine's inspect shows it: the up's
    labels, running, published where the up said. A record pointed at a look-alike (its
    name, no labels) is refused, and the look-alike is left running."""
    config = write_config(
        tmp_path / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs"
    )
    live = up(config)
    containers.run_ids.append(live.record["run_id"])
    attach = ("run", "--config", "conductor.toml", "--attach=require", "--", PY, "-c", PING)
    result = engine_conductor.run(*attach)
    assert result.code == 0, result.text
    assert "attached to the `conductor up`" in result.err
    assert "ANSWER b'+PONG\\r\\n'" in result.out

    record_path = live.logs / ".conductor-run.json"
    record = json.loads(record_path.read_text())
    (box,) = record["containers"]
    lookalike = containers.foreign("--name", f"{box['container']}-x", redis_image, "sleep", "600")
    box["container"] = lookalike
    record_path.write_text(json.dumps(record))
    result = engine_conductor.run(*attach)
    assert result.code == 125, result.text
    assert "service 'cache' of the `conductor up`" in result.err
    assert "does not carry the up's labels" in result.err
    assert containers.exists(lookalike)
    assert live.alive()


def test_a_forged_container_entry_is_refused_in_one_short_line(
    engine_conductor, tmp_path, redis_image, containers, up
):
    """A record's container entries are a forger's strings: a service name with a newline
    and a terminal escape, an engine name of 100 000 characters. --attach refuses either
    in one line of plain text. Before: the newline and the escape reached the terminal,
    and the engine's whole name made a 100 kB message."""
    config = write_config(
        tmp_path / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs"
    )
    live = up(config)
    containers.run_ids.append(live.record["run_id"])
    record_path = live.logs / ".conductor-run.json"
    real = json.loads(record_path.read_text())
    (box,) = real["containers"]
    attach = ("run", "--config", "conductor.toml", "--attach=require", "--", PY, "-c", PING)
    for entry, said in (
        ({**box, "service": "c\nb\x1b[31m"}, "service '?', which the `conductor up` runs"),
        ({**box, "engine": "x" * 100_000}, "is not a container engine conductor knows"),
    ):
        record_path.write_text(json.dumps({**real, "containers": [entry]}))
        result = engine_conductor.run(*attach)
        assert result.code == 125, result.text
        assert said in result.err
        assert len(result.err.splitlines()) == 1, result.err
        assert "\x1b" not in result.err
        assert len(result.err) < 1000
    assert live.alive()


def test_ctrl_c_while_attach_asks_a_hanging_engine_ends_the_run_at_once(
    engine_conductor, tmp_path, redis_image, containers, up
):
    """--attach asks the engine about the up's containers before anything is started:
    a Ctrl-C then ends the run at once, with SIGINT's status, and the engine's command
    goes with it. Before: the Ctrl-C waited for the engine (here 30 s), and was then lost:
    exit 125."""
    config = write_config(
        tmp_path / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs"
    )
    live = up(config)
    containers.run_ids.append(live.record["run_id"])
    bin_dir, child = tmp_path / "bin", tmp_path / "child.pid"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(f'#!/bin/sh\nsleep 30 & echo $! > "{child}"\nwait\n')
    (bin_dir / "podman").chmod(0o755)
    run = engine_conductor.start(
        "run",
        "--config",
        "conductor.toml",
        "--attach=require",
        "--",
        PY,
        sigint=True,
        path=f"{bin_dir}:{os.environ['PATH']}",
    )
    try:
        wait_for(lambda: child.exists() and child.read_text().strip(), 30, "the engine")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=10)
        assert run.returncode == 130, err
        wait_for(lambda: gone(int(child.read_text())), 5, "the engine's child to be killed")
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.kill(int(child.read_text()), signal.SIGKILL)
    assert live.alive()


@BOTH_ENGINES
def test_two_runs_at_once_on_auto_ports(engine_conductor, tmp_path, redis_image, containers):
    procs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        write_config(folder / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs")
        engine_conductor.cwd = folder
        procs.append(
            (
                folder,
                engine_conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", PING),
            )
        )
    for folder, proc in procs:
        out, err = proc.communicate(timeout=120)
        track(containers, folder / "logs")
        assert proc.returncode == 0, err
        assert "ANSWER b'+PONG\\r\\n'" in out
    ports = {
        json.loads((f / "logs" / "summary.json").read_text())["services"]["cache"]["port"]
        for f, _ in procs
    }
    assert len(ports) == 2


def test_an_engine_that_cannot_run_containers_says_so_in_its_own_line(
    engine_conductor, tmp_path, redis_image, containers
):
    """Here: podman with a runtime that does not exist (as podman without runc, or
    without the ulimits, on this kind of machine). Named by `engine`, it is tried: 125
    with its line; looked for, it does not answer `info`: exit 2, with its line."""
    conf = tmp_path / "broken.conf"
    conf.write_text('[engine]\nruntime = "conductor-no-such-runtime"\n')
    engine_conductor.env["CONTAINERS_CONF"] = str(conf)
    write_config(
        tmp_path / "conductor.toml", {"cache": cache(redis_image, engine="podman")}, logs_dir="logs"
    )
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    track(containers, tmp_path / "logs")
    assert result.code == 125, result.text
    assert "service 'cache'" in result.err
    assert "conductor-no-such-runtime" in result.err, result.err
    write_config(tmp_path / "conductor.toml", {"cache": cache(redis_image)}, logs_dir="logs")
    result = engine_conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert 'default OCI runtime "conductor-no-such-runtime" not found' in result.err
