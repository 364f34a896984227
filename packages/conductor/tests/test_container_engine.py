"""conductor's container engine layer against real podman and real containers: the
engine it picks, what `run` is given, what `inspect` reports, and a stop that acts
only on a container whose labels carry the run's mark."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from conductor import container
from conductor.container import Engine, NoEngine, Publish, RunRequest
from conductor.process.ownership import Mark, NotOurs
from support import Containers, free_port, gone, wait_for

pytestmark = pytest.mark.conductor

SECRET = "pa55 word-" + uuid.uuid4().hex  # a value no command line may hold


@pytest.fixture
def engine(redis_image: str) -> Engine:
    return container.find_engine("podman", os.environ)


@pytest.fixture
def mark(tmp_path: Path, containers: Containers) -> Mark:
    run = Mark(uuid.uuid4().hex, str(tmp_path / "logs"))
    containers.run_ids.append(run.run_id)
    return run


def ping(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)
    except OSError:
        return b""


class Attached:
    """`ENGINE run` attached, as conductor runs it: the client's output is the log."""

    def __init__(self, engine: Engine, request: RunRequest, log: Path) -> None:
        self.engine, self.request, self.log = engine, request, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *container.run_argv(self.engine, self.request),
                env=container.run_environ(os.environ, self.request),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    async def exited(self, seconds: float = 30) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), seconds)


def redis_request(mark: Mark, image: str, port: int, **kw: object) -> RunRequest:
    defaults: dict[str, object] = {
        "command": ("sh", "-c", 'echo "secret is $SECRET"; exec redis-server --protected-mode no'),
        "publish": Publish("127.0.0.1", port, 6379),
        "env": {"SECRET": SECRET},
        "pull": "never",
    }
    return RunRequest(mark=mark, service="cache", image=image, **{**defaults, **kw})  # type: ignore[arg-type]


def test_the_engine_named_or_the_first_that_answers(tmp_path: Path, redis_image: str) -> None:
    podman = container.find_engine(None, {**os.environ, "CONDUCTOR_CONTAINER_ENGINE": "podman"})
    assert podman.name == "podman"
    assert Path(podman.path).name == "podman"
    with pytest.raises(NoEngine, match=r"CONDUCTOR_CONTAINER_ENGINE=.lxc. is not a container"):
        container.find_engine(None, {**os.environ, "CONDUCTOR_CONTAINER_ENGINE": "lxc"})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoEngine, match="neither podman nor docker is on PATH"):
        container.find_engine(None, {**os.environ, "PATH": str(empty)})
    with pytest.raises(NoEngine, match="'docker' was not found on PATH"):
        container.find_engine("docker", {**os.environ, "PATH": str(empty)})
    # A client that does not answer `info` (docker with no daemon) is passed over.
    mute = tmp_path / "mute"
    mute.mkdir()
    (mute / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the daemon' >&2\nexit 1\n")
    (mute / "docker").chmod(0o755)
    with pytest.raises(NoEngine, match="docker: Cannot connect to the daemon"):
        container.find_engine(None, {**os.environ, "PATH": str(mute)})
    podman_dir = str(Path(podman.path).parent)
    chosen = container.find_engine(None, {**os.environ, "PATH": f"{mute}:{podman_dir}"})
    assert chosen.name == "podman"


def test_run_is_named_labelled_published_and_holds_env_names_only(mark: Mark) -> None:
    engine = Engine("podman", "/usr/bin/podman")
    request = RunRequest(
        mark=mark,
        service="my cache",
        image="localhost/x:1",
        command=("redis-server", "--save", ""),
        publish=Publish("127.0.0.1", 4242, 6379),
        env={"PASSWORD": SECRET},
        options=("--shm-size", "256m"),
        pull="never",
        stop_timeout=2.5,
    )
    argv = container.run_argv(engine, request)
    assert SECRET not in " ".join(argv)
    assert argv[argv.index("--env") + 1] == "PASSWORD"
    assert argv[argv.index("--name") + 1] == f"conductor-{mark.run_id}-my_cache"
    assert f"conductor.run-id={mark.run_id}" in argv
    assert f"conductor.logs-dir={mark.logs_dir}" in argv
    assert "conductor.service=my cache" in argv
    assert "127.0.0.1:4242:6379" in argv
    assert "--pull=never" in argv
    assert "--stop-timeout=3" in argv
    # options go before the image, the command after it
    assert argv[-6:] == ["--shm-size", "256m", "localhost/x:1", "redis-server", "--save", ""]
    assert container.run_environ({"PATH": "/bin"}, request) == {"PATH": "/bin", "PASSWORD": SECRET}


def test_a_real_container_runs_logs_and_is_inspected_then_stopped(
    engine: Engine, mark: Mark, redis_image: str, tmp_path: Path
) -> None:
    port = free_port()
    request = redis_request(mark, redis_image, port)
    run = Attached(engine, request, tmp_path / "cache.log")

    async def scenario() -> None:
        await run.start()
        assert run.proc is not None
        client = Path(f"/proc/{run.proc.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in client  # the value is in its environment only
        await asyncio.to_thread(wait_for, lambda: ping(port) == b"+PONG\r\n", 30, "PONG")
        found = await container.inspect(engine, request.name)
        assert found is not None
        assert found.running
        assert found.status == "running"
        assert found.carries(mark, "cache")
        assert not found.carries(mark, "db")
        assert found.name == request.name
        assert found.ports[6379] == (("127.0.0.1", port),)
        assert found.publishes("127.0.0.1", port)
        assert not found.publishes("127.0.0.1", port + 1)
        assert [c.id for c in await container.marked(engine, mark)] == [found.id]
        stopped = await container.stop(
            engine, found.id, mark, "cache", stop_signal="SIGTERM", stop_timeout=10
        )
        assert stopped.outcome == "stopped", stopped
        assert stopped.exit_code == 0  # redis ends cleanly on SIGTERM
        assert await container.inspect(engine, found.id) is None  # removed
        await run.exited()

    asyncio.run(scenario())
    log = (tmp_path / "cache.log").read_text()
    assert f"secret is {SECRET}" in log  # the container got the value; its output is the log
    assert "Ready to accept connections" in log


def test_a_container_that_ignores_the_stop_signal_is_killed_after_stop_timeout(
    engine: Engine, mark: Mark, redis_image: str, tmp_path: Path
) -> None:
    # `sleep` as the container's PID 1 has no handler, so SIGTERM does nothing to it.
    request = RunRequest(mark=mark, service="stubborn", image=redis_image, command=("sleep", "600"))
    run = Attached(engine, request, tmp_path / "stubborn.log")

    async def scenario() -> None:
        await run.start()
        found = await _running(engine, request.name)
        stopped = await container.stop(
            engine, found.id, mark, "stubborn", stop_signal="SIGTERM", stop_timeout=1
        )
        assert stopped.outcome == "forced", stopped
        assert stopped.exit_code == 137
        assert await container.inspect(engine, found.id) is None
        await run.exited()

    asyncio.run(scenario())


def test_a_container_that_exited_by_itself_is_removed_with_its_code_and_volumes(
    engine: Engine, mark: Mark, redis_image: str, tmp_path: Path, containers: Containers
) -> None:
    request = RunRequest(
        mark=mark,
        service="task",
        image=redis_image,
        command=("sh", "-c", "echo done > /data/out; exit 3"),
        options=("--volume", "/data"),  # an anonymous volume
    )
    run = Attached(engine, request, tmp_path / "task.log")

    async def scenario() -> None:
        await run.start()
        assert await run.exited() == 3  # the attached client exits as the container did
        found = await container.inspect(engine, request.name)
        assert found is not None
        assert not found.running
        assert found.exit_code == 3
        volume = containers.engine(
            "container", "inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", found.id
        ).stdout.strip()
        assert volume
        stopped = await container.stop(
            engine, found.id, mark, "task", stop_signal="SIGTERM", stop_timeout=5
        )
        assert (stopped.outcome, stopped.exit_code) == ("exited", 3)
        assert await container.inspect(engine, found.id) is None
        gone = containers.engine("volume", "exists", volume, check=False)
        assert gone.returncode != 0, f"anonymous volume {volume} was left behind"

    asyncio.run(scenario())


def test_a_look_alike_without_the_runs_labels_is_left_alone(
    engine: Engine, mark: Mark, redis_image: str, containers: Containers
) -> None:
    """A name is no proof: a foreign container called as conductor would call this
    run's, and one labelled with the run id but another logs folder, stay running."""
    name = container.container_name(mark, "cache")
    bare = containers.foreign("--name", name, redis_image, "sleep", "600")
    half = containers.foreign(
        "--label",
        f"conductor.run-id={mark.run_id}",
        "--label",
        "conductor.logs-dir=/somewhere/else",
        "--label",
        "conductor.service=cache",
        redis_image,
        "sleep",
        "600",
    )

    async def scenario() -> None:
        for ref in (name, bare, half):
            with pytest.raises(NotOurs, match="does not carry this run's labels"):
                await container.stop(
                    engine, ref, mark, "cache", stop_signal="SIGKILL", stop_timeout=1
                )
        assert await container.marked(engine, mark) == []  # the filter is no proof either
        for ref in (bare, half):
            found = await container.inspect(engine, ref)
            assert found is not None
            assert found.running

    asyncio.run(scenario())


def test_an_image_missing_with_pull_never_fails_naming_it(
    engine: Engine, mark: Mark, tmp_path: Path
) -> None:
    request = RunRequest(
        mark=mark, service="ghost", image="localhost/conductor-no-such:0", pull="never"
    )
    run = Attached(engine, request, tmp_path / "ghost.log")

    async def scenario() -> int:
        await run.start()
        return await run.exited()

    assert asyncio.run(scenario()) == 125
    assert "localhost/conductor-no-such:0" in (tmp_path / "ghost.log").read_text()


async def _running(engine: Engine, name: str) -> container.Container:
    """The container once the engine reports it running (polled: `run` gives no signal)."""
    for _ in range(3000):
        found = await container.inspect(engine, name)
        if found is not None and found.running:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never ran")


def test_the_engines_looked_for_are_the_ones_the_engine_key_accepts() -> None:
    import typing

    from conductor.config import schema

    assert set(container.ENGINES) == set(typing.get_args(schema.EngineName))


def script_engine(folder: Path, body: str) -> Engine:
    """A `podman` that is a shell script (as a wrapper on PATH is): `body` is its code."""
    path = folder / "podman"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return Engine("podman", str(path))


def test_an_engine_command_past_its_deadline_is_cut_off_with_what_it_started(
    tmp_path: Path,
) -> None:
    """An engine that hangs (a wrapper script waiting on its own child, which holds the
    output open) is given up at the command's deadline, not when that child ends; the
    child goes with it. Before: both calls took the child's 30 s, the 1 s deadline
    notwithstanding."""
    child = tmp_path / "child.pid"
    engine = script_engine(tmp_path, f'sleep 30 & echo $! > "{child}"\nwait')
    try:
        began = time.monotonic()
        with pytest.raises(container.EngineFailed, match="did not answer in 1 s"):
            container.inspect_blocking(engine, "cache", seconds=1)
        assert time.monotonic() - began < 10
        wait_for(lambda: gone(int(child.read_text())), 5, "the engine's child to be killed")

        async def inspect() -> None:
            await container.call(engine, "container", "inspect", "--", "cache", seconds=1)

        began = time.monotonic()
        with pytest.raises(container.EngineFailed, match="did not answer in 1 s"):
            asyncio.run(inspect())
        assert time.monotonic() - began < 10
        wait_for(lambda: gone(int(child.read_text())), 5, "the engine's child to be killed")
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.kill(int(child.read_text()), signal.SIGKILL)


def test_an_inspect_naming_ports_in_other_digits_reads_as_unpublished(
    tmp_path: Path,
) -> None:
    """Garbage from the engine (a port "²", which str.isdigit() takes and int() does not)
    is no published port; before: ValueError, a traceback out of --attach."""
    answer = '[{"Id": "abc", "NetworkSettings": {"Ports": {"²/tcp": null, "6379/tcp": [{"HostIp": "", "HostPort": "²"}]}}}]'
    engine = script_engine(tmp_path, f"echo '{answer}'")
    found = container.inspect_blocking(engine, "cache", seconds=10)
    assert found is not None
    assert found.ports == {6379: ()}
    assert not found.publishes("127.0.0.1", 2)


def test_an_engine_command_cancelled_is_killed_with_what_it_started(tmp_path: Path) -> None:
    """A call cancelled (a second Ctrl-C cancels the run) kills its engine command: in a
    group of its own, no Ctrl-C at the terminal reaches it. Before: it was left running."""
    child = tmp_path / "child.pid"
    engine = script_engine(tmp_path, f'sleep 30 & echo $! > "{child}"\nwait')

    async def cancelled() -> None:
        task = asyncio.ensure_future(container.call(engine, "wait", "--", "cache", seconds=30))
        while not child.exists() or not child.read_text().strip():
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(asyncio.wait_for(cancelled(), 20))
        wait_for(lambda: gone(int(child.read_text())), 5, "the engine's child to be killed")
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.kill(int(child.read_text()), signal.SIGKILL)


def _cache_as_inspected(mark: Mark, status: container.Status) -> container.Container:
    """The up's cache container as an engine's inspect would give it: the up's labels,
    Running: true (docker says so even when paused), published on 127.0.0.1:5555."""
    return container.Container(
        id="c" * 64,
        name="conductor-x-cache",
        labels=container.labels(mark, "cache"),
        status=status,
        running=True,
        exit_code=0,
        ports={6379: (("127.0.0.1", 5555),)},
    )


def test_attach_never_reuses_a_paused_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker's inspect says Running: true for a paused container, which answers no
    probe (found attacking --attach; podman says false, so this is docker's answer,
    given to the check as the engine would)."""
    import signal as signals

    from conductor import attach
    from conductor.environment import Address
    from conductor.rundir.run_record import ContainerEntry, Rule

    mark = Mark("ab" * 16, "/logs")
    paused = _cache_as_inspected(mark, status="paused")
    monkeypatch.setattr(container, "named_engine", lambda name, env: Engine(name, "/bin/false"))
    monkeypatch.setattr(container, "inspect_blocking", lambda engine, ref: paused)
    box = ContainerEntry("cache", "docker", "c" * 64, Rule(signals.SIGTERM, 1.0))
    why = attach._container_not_ours(box, mark, Address("127.0.0.1", 5555, None))
    assert why == f"container {'c' * 64} is paused"


def test_one_container_entered_for_two_services_is_proved_for_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--attach asks the engine once per recorded container: keyed by the container
    alone, a forged record naming cache's own container for db too passed db unasked
    (its labels, and its published port, never checked). Each service's entry is asked
    about, with that service's labels."""
    import signal as signals

    from conductor import attach
    from conductor.environment import Address
    from conductor.rundir.run_record import ContainerEntry, Record, Rule

    mark = Mark("ab" * 16, "/logs")
    cache = _cache_as_inspected(mark, status="running")
    asked: list[str] = []

    def inspect(engine: Engine, ref: str) -> container.Container:
        asked.append(ref)
        return cache

    monkeypatch.setattr(container, "named_engine", lambda name, env: Engine(name, "/bin/false"))
    monkeypatch.setattr(container, "inspect_blocking", inspect)
    rule = Rule(signals.SIGTERM, 1.0)
    boxes = [ContainerEntry(service, "podman", "c" * 64, rule) for service in ("cache", "db")]
    boxes += [boxes[0]] * 50  # one container's repeated entries: asked about once
    record = Record("ab" * 16, [], [], [], conductor_pid=1, containers=boxes)
    addresses = {
        "cache": Address("127.0.0.1", 5555, None),
        "db": Address("127.0.0.1", 6666, None),
    }
    found = list(attach._not_started_by_the_up(record, mark, addresses))
    assert found == [("db", f"container {'c' * 64} does not carry the up's labels")]
    assert len(asked) == 2
