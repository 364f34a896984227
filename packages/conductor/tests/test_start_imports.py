"""The import budget of `conductor run`'s start, as data: which modules it has loaded
when it spawns its first service (issue 17 item 8, "Start faster").

Everything imported before that spawn is paid on every run, before any service can
begin its own start; what a plain run needs only later (the HTTP probe's aiohttp,
teardown's psutil, summary.json and report.html) or never (--attach, containers,
PostgreSQL) is imported where it is used. Counted as modules, never timed: a number of
milliseconds is the benchmark's (benchmarks/bench_conductor.py), not a test's.
"""

from __future__ import annotations

import json
import subprocess
import typing
from pathlib import Path

import pytest

from support import FAKES, PY, fake

pytestmark = pytest.mark.conductor

# Runs `conductor run` as `python -m conductor` does, and writes the modules loaded
# since its own start (json, runpy and the interpreter's are not conductor's) when the
# first service is spawned: the first Popen of the fakes (the watchdog's comes before).
AT_FIRST_SPAWN = r"""
import json, os, runpy, sys
out, fakes = sys.argv[1], sys.argv[2]
before = set(sys.modules)
def hook(event, args):
    if event == "subprocess.Popen" and fakes in map(str, args[1]) and not os.path.exists(out):
        with open(out, "w") as handle:
            json.dump(sorted(set(sys.modules) - before), handle)
sys.addaudithook(hook)
sys.argv = ["conductor", *sys.argv[3:]]
runpy.run_module("conductor", run_name="__main__", alter_sys=True)
"""

# Loaded by the time of the first spawn of a plain run, they would cost every run:
# the first three are imported after it (the HTTP probe, teardown, the console's
# table), the rest only by the runs that need them.
NOT_BEFORE_THE_FIRST_SPAWN = {
    "aiohttp",  # the HTTP probe: after the spawn, in Preload's thread
    "psutil",  # teardown's process handles: after the spawn, in the same thread
    "rich",  # the closing table
    "dotenv",  # env files
    "hashlib",  # --attach's fingerprint, the PostgreSQL template cache
    "html",  # report.html, and masking a hidden secret's HTML form
    "conductor.attach",  # --attach and `up`'s publish
    "conductor.container",  # kind = "container" (and its engine's inspect Structs)
    "conductor.postgres.clusters",  # kind = "postgres"
    "conductor.postgres.template_cache",
    "conductor.process.listeners",  # whose server answered: once a probe has passed
    "conductor.report.summary",  # summary.json's Structs, and removing the last one's
    "conductor.report.html_page",
}


def modules_at_first_spawn(conductor, config, tmp_path: Path, *args: str) -> set[str]:
    port = "{port}"
    config(
        {
            "web": {
                "command": fake("http", "--port", port),
                "port": "auto",
                "ready": {"http": "/"},
            }
        }
    )
    out = tmp_path / "modules.json"
    # Not measured by coverage: its own imports (hashlib among them) are no start's.
    env = {k: v for k, v in conductor.env.items() if not k.startswith("COVERAGE")}
    argv = ["run", "--config", "conductor.toml", *args, "--", PY, "-c", "pass"]
    done = subprocess.run(
        [PY, "-c", AT_FIRST_SPAWN, str(out), str(FAKES), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return set(json.loads(out.read_text()))


def test_a_plain_run_spawns_its_first_service_before_it_imports_what_it_needs_later(
    conductor, config, tmp_path
):
    loaded = modules_at_first_spawn(conductor, config, tmp_path)
    assert "asyncio" in loaded, "the hook did not see conductor's start"
    early = {m for m in loaded if m.split(".")[0] in NOT_BEFORE_THE_FIRST_SPAWN}
    early |= loaded & NOT_BEFORE_THE_FIRST_SPAWN
    assert not early, f"imported before the first service was spawned: {sorted(early)}"


def test_the_cli_spells_the_attach_modes_as_attach_does() -> None:
    from conductor import attach, cli

    assert cli.ATTACH_MODES == attach.ATTACH_MODES == typing.get_args(attach.AttachMode)
