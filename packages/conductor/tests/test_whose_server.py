"""A probe's answer counts only from the service's own server (Linux): a fixed port can
be taken by another program after the plan was made, and COMMAND must not run against
that program."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest

from support import PY, fake, free_port, wait_for

pytestmark = [
    pytest.mark.conductor,
    pytest.mark.skipif(sys.platform != "linux", reason="the listener's owner is read from /proc"),
]


def test_another_programs_server_on_the_port_fails_the_run_naming_it(conductor, config, tmp_path):
    """The service starts, this test takes its port before the service binds it, and the
    service retries binding forever: the probe is answered, but by this test."""
    port = free_port()
    config(
        {
            "svc": {
                "command": fake("late-bind", "--port", "{port}"),
                "port": port,
                "ready_timeout": 60,
            }
        }
    )
    ran = tmp_path / "command-ran"
    proc = conductor.start(
        "run", "--config", "conductor.toml", "--", PY, "-c", f"open({str(ran)!r}, 'w')"
    )
    log = tmp_path / "logs" / "svc.log"
    # Once the service runs, the plan (and its check that the port is free) is done.
    wait_for(lambda: log.exists() and "fake late-bind" in log.read_text(), what="svc to start")
    impostor = socket.socket()
    try:
        impostor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        impostor.bind(("127.0.0.1", port))
        impostor.listen(64)
        _, err = proc.communicate(timeout=60)
    finally:
        impostor.close()
    assert proc.returncode == 125, err
    assert not ran.exists(), "COMMAND ran against another program's server"
    (line,) = [line for line in err.splitlines() if "was not the one answering" in line]
    assert f"port {port}" in line
    assert f"pid {os.getpid()} (" in line  # this test's process, with its command line
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["exit_code"] == 125
    assert summary["services"]["svc"]["status"] == "failed"


@pytest.mark.parametrize("where", ["child", "setsid-child"])
def test_a_listener_held_by_the_services_own_descendant_counts(conductor, config, tmp_path, where):
    """Not only the leader: a child in its process group, or one that left the group
    (found by the run's marker), holds the service's own socket."""
    if where == "child":
        serve = fake("tcp", "--port", "{port}")
        command = [PY, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]
        command += serve
    else:
        command = fake("setsid-server", "--port", "{port}")
    config({"svc": {"command": command, "port": free_port(), "ready_timeout": 30}})
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    assert "was not the one answering" not in result.text


def test_netlink_and_proc_net_list_the_same_listeners():
    """The fast path (sock_diag netlink) and the fallback (/proc/net/tcp*) agree."""
    from conductor.process import listeners

    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        port = v4.getsockname()[1]
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::", port))
        v6.listen()
        fast = {s for family in (socket.AF_INET, socket.AF_INET6) for s in listeners._diag(family)}
        slow = set(listeners._proc_net())
        mine = {s for s in fast if s.port == port}
        assert len(mine) == 2
        assert mine == {s for s in slow if s.port == port}
        assert listeners.held({s.inode for s in mine}, [os.getpid()]) == {s.inode for s in mine}


def test_the_listener_a_connection_reaches_is_the_most_specific_one():
    from conductor.process.listeners import Socket, reached

    v4, v6 = socket.AF_INET, socket.AF_INET6
    loop = socket.inet_pton(v4, "127.0.0.1")
    any4, any6 = bytes(4), bytes(16)
    mapped = bytes(10) + b"\xff\xff" + loop
    exact, wild4, wild6 = Socket(v4, loop, 1, 1), Socket(v4, any4, 1, 2), Socket(v6, any6, 1, 3)
    assert reached([exact, wild4, wild6], "127.0.0.1") == {1}
    assert reached([wild4, wild6], "127.0.0.1") == {2}
    assert reached([wild6], "127.0.0.1") == {3}
    assert reached([Socket(v6, mapped, 1, 4), wild4], "127.0.0.1") == {4}
    assert reached([exact, wild4], "::1") == set()
    assert reached([exact, wild6], "::1") == {3}
    assert reached([Socket(v4, socket.inet_pton(v4, "127.0.0.2"), 1, 5)], "127.0.0.1") == set()
