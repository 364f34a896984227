"""Property: `clean` on a run record of any shape (JSON of any kind; forged pids, groups,
start times and folders pointing at this test's own victims) never raises anything but
ConductorError, and never signals or deletes anything this test started or made."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conductor import runner
from conductor.errors import ConductorError
from support import alive

pytestmark = pytest.mark.conductor

RUN_ID = "0123456789abcdef0123456789abcdef"
PID_MAX = int(Path("/proc/sys/kernel/pid_max").read_text())

# Safe by construction, whatever a broken clean did with them: no string holds '/' or
# '.', so it can only name something in this test's own folder (the test runs there);
# no integer is a pid any process can have (<= 0, or above pid_max).
words = st.text(st.characters(blacklist_characters="/.\\~\x00"), max_size=8)
no_pid = st.integers(-(2**40), 0) | st.integers(PID_MAX + 1, 2**40)
json_values = st.recursive(
    st.none() | st.booleans() | no_pid | st.floats() | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def victims(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[psutil.Popen], list[Path]]]:
    """Processes (one leading a session of its own, one in this test's group) and
    folders (in this test's tmp, and in the temp directory under conductor's prefix,
    without a marker) that `clean` must never touch."""
    procs = [
        psutil.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            start_new_session=session,
            env={"PATH": os.environ.get("PATH", "")},
        )
        for session in (True, False)
    ]
    outside = tmp_path_factory.mktemp("victim")
    (outside / "keep.txt").write_text("mine")
    lookalike = Path(tempfile.mkdtemp(prefix="conductor-pg-")).resolve()
    (lookalike / "keep.txt").write_text("mine")
    try:
        yield procs, [outside, lookalike]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", str(lookalike)], check=True)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_clean_survives_any_record_and_touches_nothing_it_cannot_prove(
    data: st.DataObject,
    victims: tuple[list[psutil.Popen], list[Path]],
    tmp_path: Path,
) -> None:
    procs, folders = victims
    pids = st.sampled_from([*(p.pid for p in procs), os.getpid(), 1]) | json_values
    times = st.sampled_from([p.create_time() for p in procs]) | json_values
    paths = st.sampled_from([str(f) for f in folders]) | json_values
    entry = (
        st.fixed_dictionaries(
            {}, optional={"pid": pids, "pgid": pids, "created": times, "service": json_values}
        )
        | json_values
    )
    record = (
        st.fixed_dictionaries(
            {},
            optional={
                "run_id": st.just(RUN_ID) | json_values,
                "processes": st.lists(entry, max_size=4) | json_values,
                "folders": st.lists(paths, max_size=4) | json_values,
                "conductor_pid": pids,
            },
        )
        | json_values
    )
    logs = Path(tempfile.mkdtemp(dir=tmp_path))
    text = data.draw(record.map(json.dumps) | words, label="record")
    (logs / ".conductor-run.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    cwd = os.getcwd()
    os.chdir(logs)
    try:
        asyncio.run(runner.clean(logs))
    except ConductorError:
        pass
    finally:
        os.chdir(cwd)
    assert all(alive(p) for p in procs)
    assert all((f / "keep.txt").read_text() == "mine" for f in folders)
