"""The pytest plugin holds its Stack on an event loop in a thread of its own. A Ctrl-C or
SIGTERM sent to pytest is process-directed: the kernel may hand it to any thread that
does not block it. Taken by conductor's thread, Python only sets a flag, and a test
blocked in the main thread (time.sleep, a socket read) goes on for as long as it
blocks: CI saw pytest ignore both signals for a whole minute. So conductor's threads
block the two, leaving them to the main thread, and the services they start get an
unblocked mask back (a blocked SIGTERM would survive exec and make every service wait
out its stop_timeout)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from conductor.config.loading import load_config
from conductor.pytest_plugin.in_thread import HeldInThread
from conductor.stack import Stack
from support import PY, write_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SHOW_MASK = (
    "import time\n"
    "print([l for l in open('/proc/self/status') if l.startswith('SigBlk')][0], flush=True)\n"
    "time.sleep(60)"
)


def blocked(status: Path) -> set[int]:
    """The signals a thread or process blocks, from its /proc status file."""
    for line in status.read_text().splitlines():
        if line.startswith("SigBlk:"):
            return mask_signals(line.split()[1])
    raise AssertionError(f"no SigBlk in {status}")


def mask_signals(hex_mask: str) -> set[int]:
    bits = int(hex_mask, 16)
    return {n for n in range(1, 65) if bits & (1 << (n - 1))}


def test_conductors_thread_leaves_ctrl_c_and_sigterm_to_the_main_thread(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        {"svc": {"command": [PY, "-c", SHOW_MASK], "ready": {"log": "SigBlk"}}},
        logs_dir="logs",
    )
    stack = Stack(load_config(config))
    held = HeldInThread(lambda: stack, "conductor-stack")
    with held:
        holder = next(t for t in threading.enumerate() if t.name == "conductor-stack")
        assert holder.native_id is not None
        threads = blocked(Path(f"/proc/self/task/{holder.native_id}/status"))
        log = (tmp_path / "logs" / "svc.log").read_text()
    assert {signal.SIGINT, signal.SIGTERM} <= threads
    # The main thread, which runs the tests, keeps both.
    assert not {signal.SIGINT, signal.SIGTERM} & blocked(Path("/proc/thread-self/status"))
    # The service's own mask is the one it would have had anyway: nothing blocked.
    (line,) = [line for line in log.splitlines() if "SigBlk" in line]
    assert mask_signals(line.split()[-1]) == set(), line
    assert stack.reports["svc"].stopped == "stopped by SIGTERM"
