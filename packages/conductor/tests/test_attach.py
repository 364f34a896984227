"""Attaching to a live `conductor up`: reused only when it is the same stack and provably
conductor's; never started, never stopped by the one that attaches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from support import (
    PY,
    RECORD,
    fake,
    gone,
    kill_watchdog,
    needs_postgres,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.conductor

WEB = {"command": fake("http", "--port", "{port}"), "port": "auto", "ready": {"http": "/"}}
PEER = {"command": fake("tcp", "--port", "{port}"), "port": "auto"}
SHOW = "import os; print('WEB', os.environ['WEB_URL'], os.environ['CONDUCTOR_RUN_ID'])"


def make_config(folder: Path, **services: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder / "conductor.toml", services or {"web": WEB}, logs_dir="logs")


def attach_run(conductor, config: Path, mode: str = "require", *more: str):
    return conductor.run(
        "run", "--config", str(config), f"--attach={mode}", *more, "--", PY, "-c", SHOW
    )


def test_run_attach_reuses_the_live_up_and_stops_nothing(conductor, tmp_path, up):
    config = make_config(tmp_path / "a")
    live = up(config)
    result = attach_run(conductor, config)
    assert result.code == 0, result.text
    assert f"WEB {live.url} " in result.out
    # The command has a marker of its own, not the up's.
    assert live.record["run_id"] not in result.out
    assert "attached to the `conductor up`" in result.err
    assert "nothing started, nothing will be stopped" in result.err
    assert live.alive()
    assert json.loads((live.logs / RECORD).read_text())["run_id"] == live.record["run_id"]


def test_bare_attach_is_auto_and_starts_its_own_stack_when_there_is_none(conductor, tmp_path):
    config = make_config(tmp_path / "a")
    result = conductor.run("run", "--config", str(config), "--attach", "--", PY, "-c", SHOW)
    assert result.code == 0, result.text
    assert "not attaching: no live `conductor up` in" in result.err
    summary = json.loads((config.parent / "logs" / "summary.json").read_text())
    assert gone(summary["services"]["web"]["pid"])


def test_never_reused_other_services_other_config_other_folder(conductor, tmp_path, up):
    config = make_config(tmp_path / "a", web=WEB, peer=PEER)
    live = up(config, "web")  # runs web only
    # a service the up does not run
    result = attach_run(conductor, config, "require")
    assert result.code == 125, result.text
    assert "runs web; this run also needs peer" in result.err
    # other logs folder
    result = attach_run(conductor, config, "require", "--logs-dir", str(tmp_path / "elsewhere"))
    assert result.code == 125
    assert f"no live `conductor up` in {tmp_path / 'elsewhere'}" in result.err
    # the same file, changed since the up started
    changed = config.read_text().replace('"http"', '"http", "--delay", "0"', 1)
    config.write_text(changed)
    result = attach_run(conductor, config)
    assert result.code == 125
    assert "was started from a different configuration" in result.err
    # another file, pointed at the same logs folder
    other = make_config(tmp_path / "b", web=WEB, peer=PEER)
    result = attach_run(conductor, other, "require", "--logs-dir", str(live.logs))
    assert result.code == 125
    assert f"runs {config}, not {other}" in result.err
    assert live.alive()


def test_auto_falls_back_to_a_stack_of_its_own_saying_why(conductor, tmp_path, up):
    """Without --if-busy: the up holds the folder, so the run's own stack logs to a
    run-PID subfolder instead of failing on the lock (issue 19, item 3)."""
    config = make_config(tmp_path / "a", web=WEB, peer=PEER)
    live = up(config, "web")
    result = conductor.run("run", "--config", str(config), "--attach", "--", PY, "-c", SHOW)
    assert result.code == 0, result.text
    assert "not attaching: the `conductor up` in" in result.err
    assert "this run logs to" in result.err
    assert f"WEB {live.url} " not in result.out
    assert list(live.logs.glob("run-*"))
    assert live.alive()


def test_a_run_attaches_to_an_up_of_more_services_and_sees_only_its_own(conductor, tmp_path, up):
    """up of web and peer; a run that needs web alone attaches (issue 19, item 3), and
    its COMMAND's environment is the one a run of web alone would give it."""
    config = make_config(tmp_path / "a", web=WEB, peer=PEER)
    live = up(config)
    show = "import os; print('WEB', os.environ['WEB_URL'], 'PEER', os.environ.get('PEER_URL'))"
    result = conductor.run(
        "run", "--config", str(config), "--attach=require", "web", "--", PY, "-c", show
    )
    assert result.code == 0, result.text
    assert "attached to the `conductor up`" in result.err
    assert f"WEB {live.url} PEER None" in result.out
    assert live.alive()


def test_a_killed_up_is_not_reused_though_its_services_linger(conductor, tmp_path, up):
    config = make_config(tmp_path / "a")
    live = up(config)
    kill_watchdog(live.proc, live.logs)  # else it stops them: the case `clean` is for
    live.proc.send_signal(signal.SIGKILL)
    live.proc.wait()
    assert not any(gone(pid) for pid in live.pids)  # orphaned, still serving
    result = attach_run(conductor, config)
    assert result.code == 125
    assert "is gone; `conductor clean` stops what it left" in result.err
    assert conductor.run("clean", "--config", str(config)).code == 0
    assert all(gone(pid) for pid in live.pids)


def test_a_record_naming_processes_that_are_not_conductors_is_never_trusted(
    conductor, tmp_path, up
):
    """A record whose pids are not the stack's (another process, no marker, another start
    time): not attached to, and the processes it names are not touched."""
    config = make_config(tmp_path / "a")
    live = up(config)
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(300)"])
    try:
        # The up's own record, copied to another folder, naming the bystander with its
        # true start time: everything checks out but the marker.
        forged = json.loads((live.logs / RECORD).read_text())
        created = psutil.Process(bystander.pid).create_time()
        forged["processes"] = [
            {"service": "web", "pid": bystander.pid, "pgid": bystander.pid, "created": created}
        ]
        copy = tmp_path / "copy" / "logs"
        copy.mkdir(parents=True)
        forged["stack"]["logs_dir"] = str(copy)
        (copy / RECORD).write_text(json.dumps(forged))
        result = attach_run(conductor, config, "require", "--logs-dir", str(copy))
        assert result.code == 125, result.text
        assert f"pid {bystander.pid} does not carry this run's mark" in result.err
        assert "and is no child of the up" in result.err
        # the same record, in the up's own folder, naming a recycled-looking start time
        real = json.loads((live.logs / RECORD).read_text())
        real["processes"][0]["created"] -= 10
        (live.logs / RECORD).write_text(json.dumps(real))
        result = attach_run(conductor, config)
        assert result.code == 125
        assert "started at another time than recorded" in result.err
        assert bystander.poll() is None
        assert live.alive()
    finally:
        bystander.kill()
        bystander.wait()


def test_container_entries_for_no_container_service_are_refused_unasked(conductor, tmp_path, up):
    """An up records one container per container service it runs. A record naming 2000
    containers for its process service is refused with no engine call at all. Before:
    each entry was one engine call (its own 30 s deadline, no bound on the sum; 2000
    answers took 5 s from a shell script, minutes from podman) and, answered as the
    up's labels, the run attached."""
    config = make_config(tmp_path / "a")
    live = up(config)
    real = json.loads((live.logs / RECORD).read_text())
    boxes = [{"service": "web", "engine": "podman", "container": f"c{i}"} for i in range(2000)]
    (live.logs / RECORD).write_text(json.dumps({**real, "containers": boxes}))
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (bin_dir / "podman").chmod(0o755)
    conductor.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    result = attach_run(conductor, config)
    assert result.code == 125, result.text
    assert "container entry for service 'web', which the `conductor up` runs as no" in result.err
    assert not calls.exists()
    assert live.alive()


def test_a_conductor_run_is_not_an_up_and_is_not_attached_to(conductor, tmp_path):
    config = make_config(tmp_path / "a")
    flag = tmp_path / "running"
    waiting = f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(120)"
    run = conductor.start("run", "--config", str(config), "--", PY, "-c", waiting)
    try:
        wait_for(flag.exists, 60, "the run's command")
        result = attach_run(conductor, config)
        assert result.code == 125
        assert "is a `conductor run`, or an `up` still starting" in result.err
    finally:
        os.killpg(run.pid, signal.SIGINT)
        run.communicate(timeout=30)


def test_ctrl_c_twice_in_an_attached_run_kills_only_its_command(conductor, tmp_path, up):
    config = make_config(tmp_path / "a")
    live = up(config)
    flag = tmp_path / "running"
    waiting = f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(120)"
    run = conductor.start(
        "run", "--config", str(config), "--attach=require", "--", PY, "-c", waiting
    )
    wait_for(flag.exists, 60, "the attached command")
    run.send_signal(signal.SIGINT)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert live.alive()


def test_a_service_whose_environment_is_unreadable_is_known_by_its_parent(conductor, tmp_path, up):
    """redis-server writes its title over its environment, marker included; `env -i`
    gives the same /proc view. The up's own child, leading its group, is still its."""
    blank = {**WEB, "command": ["env", "-i", *fake("http", "--port", "{port}")]}
    config = make_config(tmp_path / "a", web=blank)
    live = up(config)
    environ = psutil.Process(live.pids[0]).environ()
    assert "CONDUCTOR_RUN_ID" not in environ
    result = attach_run(conductor, config)
    assert result.code == 0, result.text
    assert f"WEB {live.url} " in result.out


@pytest.mark.postgres
@needs_postgres
def test_an_attached_run_fills_the_same_templates_as_the_up(conductor, tmp_path, up):
    """{services.db.user|database|socket_dir} come from the up as it filled them."""
    config = make_config(tmp_path / "a", db={"kind": "postgres", "database": "shop"}, web=WEB)
    up(config)
    show = "import os; print('DB', os.environ['WHO'])"
    result = conductor.run(
        "run", "--config", str(config), "--attach=require",
        "--env", "WHO={services.db.user}@{services.db.database}:{services.db.socket_dir}",
        "--", PY, "-c", show,
    )  # fmt: skip
    assert result.code == 0, result.text
    record = json.loads((config.parent / "logs" / RECORD).read_text())
    socket_dir = record["stack"]["values"]["services.db.socket_dir"]
    assert f"DB postgres@shop:{socket_dir}" in result.out


@pytest.mark.parametrize("holder", ["pid 1", "the test itself", "a live up elsewhere"])
def test_a_record_whose_up_does_not_hold_the_folder_is_never_attached_to(
    conductor, tmp_path, up, holder
):
    """The up's own record, copied to a folder no conductor holds, naming as its `up` a
    live process with its true start time (pid 1, the test process, or the real up of
    another folder) and no services to check, with addresses off this machine: a live
    up holds its logs folder's lock, so this is no live up, and nothing is attached to
    (the command never sees the forged addresses)."""
    config = make_config(tmp_path / "a")
    live = up(config)
    forged = json.loads((live.logs / RECORD).read_text())
    pid = {"pid 1": 1, "the test itself": os.getpid()}.get(holder, live.proc.pid)
    forged["conductor_pid"] = pid
    forged["stack"]["conductor_started"] = psutil.Process(pid).create_time()
    forged["processes"] = []
    far = {"host": "192.0.2.1", "port": 80, "url": "http://192.0.2.1:80"}
    forged["stack"]["addresses"]["web"] = far
    forged["stack"]["values"] = {}
    copy = tmp_path / "copy" / "logs"
    copy.mkdir(parents=True)
    forged["stack"]["logs_dir"] = str(copy)
    (copy / RECORD).write_text(json.dumps(forged))
    result = attach_run(conductor, config, "require", "--logs-dir", str(copy))
    assert result.code == 125, result.text
    assert "192.0.2.1" not in result.out
    assert f"the `conductor up` that wrote {copy} (pid {pid}) does not hold it" in result.err
    assert not (copy / ".conductor.lock").exists()  # the check creates nothing
    assert live.alive()


def test_the_busy_message_says_an_up_holds_the_folder_and_what_to_do(conductor, tmp_path, up):
    """issue 19, item 3: every "busy" message says what holds the folder."""
    config = make_config(tmp_path / "a")
    live = up(config)
    result = conductor.run("run", "--config", str(config), "--", PY, "-c", "pass")
    assert result.code == 2, result.text
    assert f"a `conductor up` (pid {live.proc.pid}) holds {live.logs}" in result.err
    assert "conductor run --attach" in result.err
    assert "--if-busy subfolder" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


@pytest.mark.parametrize(
    "where", ["a service's env, with a default", "the top-level env", "a nested default"]
)
def test_a_changed_variable_the_ups_templates_read_is_another_stack(conductor, tmp_path, up, where):
    """The up's services were filled from the environment it started in: a variable
    their templates read that has changed since makes another stack, not the up's.
    Before: `{env.X:-d}` was fingerprinted under the name 'X:-d' (never set), and the
    top-level env's variables not at all, so a run attached to services filled with
    the old value."""
    template = {
        "a service's env, with a default": "{env.CONDUCTOR_T_GREETING:-hi}",
        "the top-level env": "{env.CONDUCTOR_T_GREETING}",
        "a nested default": "{env.CONDUCTOR_T_UNSET:-{env.CONDUCTOR_T_GREETING}}",
    }[where]
    folder = tmp_path / "a"
    folder.mkdir()
    web = dict(WEB)
    top: dict[str, object] = {"logs_dir": "logs"}
    if where == "the top-level env":
        top["env"] = {"GREETING": template}
    else:
        web["env"] = {"GREETING": template}
    config = write_config(folder / "conductor.toml", {"web": web}, **top)
    conductor.env["CONDUCTOR_T_GREETING"] = "one"
    live = up(config)
    assert attach_run(conductor, config).code == 0  # the same environment: attached
    conductor.env["CONDUCTOR_T_GREETING"] = "two"
    result = attach_run(conductor, config)
    assert result.code == 125, result.text
    assert "was started from a different configuration" in result.err
    assert live.alive()
