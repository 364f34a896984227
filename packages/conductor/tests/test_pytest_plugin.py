"""The pytest plugin, through pytester: real pytest runs in subprocesses, real services.

Every run carries this test's marker (CONDUCTOR_TEST_MARKER), so the `conductor`
fixture proves afterwards that nothing the run started is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support import PY, default_sigint, fake, gone, lane_spans, wait_for, write_config

pytestmark = pytest.mark.conductor

# The runs under test: no random order, and no pytest-asyncio (it warns about its own
# unset options in a bare folder); neither is needed by the plugin.
BARE = ("-p", "no:randomly", "-p", "no:asyncio", "-p", "no:cacheprovider")
WEB = {"command": fake("http", "--port", "{port}"), "port": "auto", "ready": {"http": "/"}}


@pytest.fixture
def runs(pytester: pytest.Pytester, conductor, monkeypatch: pytest.MonkeyPatch):
    """pytest in a subprocess, in pytester's folder, with this test's marker and without
    any surrounding conductor run's variables."""
    monkeypatch.setenv("CONDUCTOR_TEST_MARKER", conductor.marker)
    for name in ("CONDUCTOR_RUN_ID", "CONDUCTOR_SERVICE", "CONDUCTOR_LOGS_DIR", "WEB_URL"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, timeout: float = 120) -> pytest.RunResult:
        return pytester.runpytest_subprocess(*BARE, *args, timeout=timeout)

    return run


def signal_states(pid: int) -> str:
    """Each thread's pending, blocked and caught signals: where a lost signal went."""
    fields = ("Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    lines = []
    for status in sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        with contextlib.suppress(OSError):
            lines += [
                status.parent.name,
                *(
                    f"  {line}"
                    for line in status.read_text().splitlines()
                    if line.startswith(fields)
                ),
            ]
    return "\n".join(lines)


def pytest_in_its_session(
    pytester: pytest.Pytester, conductor, *args: str, **popen: object
) -> subprocess.Popen[str]:
    """pytest on the web stack, in a session of its own (this test signals it), with the
    test's marker; stdout and stderr together."""
    return subprocess.Popen(
        [
            PY,
            "-m",
            "pytest",
            *BARE,
            *args,
            "--conductor-config=conductor.toml",
            "--conductor-stack=web",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CONDUCTOR_TEST_MARKER": conductor.marker},
        start_new_session=True,
        **popen,
    )


def web_config(path: Path, **services: dict[str, object]) -> Path:
    return write_config(path / "conductor.toml", services or {"web": WEB}, logs_dir="logs")


def summary(path: Path) -> dict:
    return json.loads((path / "logs" / "summary.json").read_text())


def test_a_run_that_asks_for_nothing_imports_nothing_of_conductor(pytester, runs):
    pytester.makepyfile(
        test_plain="""
        import sys
        def test_plain():
            loaded = {m for m in sys.modules if m.startswith("conductor.")}
            plugin = ("", ".plugin", ".fixture", ".hookspecs")
            light = {"conductor.pytest_plugin" + name for name in plugin}
            assert loaded <= light, loaded
        """
    )
    result = runs("-v")
    result.assert_outcomes(passed=1)
    assert "conductor:" not in result.stdout.str()
    assert "conductor-stack" in result.stdout.str()  # loaded through its entry point


def test_one_stack_for_the_run_env_fixture_header_summary(pytester, runs):
    web_config(pytester.path)
    pytester.makeini(
        """
        [pytest]
        conductor_config = conductor.toml
        conductor_stack = web
        conductor_env =
            SITE={services.web.url}/site
            WHERE={logs_dir}
        """
    )
    pytester.makepyfile(
        test_web="""
        import os, urllib.request
        def test_env_and_fixture(conductor_stack):
            url = conductor_stack.url("web")
            assert url == os.environ["WEB_URL"] == f"http://127.0.0.1:{conductor_stack.port('web')}"
            assert conductor_stack.host("web") == os.environ["WEB_HOST"] == "127.0.0.1"
            assert os.environ["SITE"] == url + "/site" == conductor_stack.env["SITE"]
            assert os.environ["WHERE"] == conductor_stack.logs_dir
            assert urllib.request.urlopen(url + "/from-the-test").status == 200
            assert "CONDUCTOR_RUN_ID" not in os.environ  # the tests are not the stack's

        def test_missing_service_fails_naming_it(conductor_stack):
            conductor_stack.url("nope")
        """
    )
    result = runs("--conductor-env", "EXTRA=1")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    logs = pytester.path / "logs"
    assert re.search(r"conductor: started web in \d+\.\d\ds", out), out
    assert f"conductor: logs in {logs}" in out
    assert "service 'nope' is not in this run's stack (running: web)" in out
    assert "request /from-the-test" in (logs / "web.log").read_text()
    report = summary(pytester.path)
    assert report["exit_code"] == 1
    assert report["command"][0] == "pytest"
    # tests_s (the README's name) is command_s, the tests being the plugin's COMMAND
    assert set(report["durations"]) == {
        "startup_s",
        "command_s",
        "tests_s",
        "teardown_s",
        "total_s",
    }
    assert report["durations"]["tests_s"] == report["durations"]["command_s"]
    assert report["action"] == "pytest"
    web = report["services"]["web"]
    assert web["status"] == "ready"
    assert web["stopped"] == "stopped by SIGTERM"
    assert gone(web["pid"])


def test_the_plugins_own_stack_is_kept_by_run_keep_logs(pytester, runs):
    """[run].keep_logs keeps the plugin's runs too, summary.json in them (issue 19)."""
    write_config(
        pytester.path / "conductor.toml", {"web": WEB}, logs_dir="logs", run={"keep_logs": 1}
    )
    pytester.makepyfile(test_web="def test_web(conductor_stack):\n    conductor_stack.url('web')\n")
    for _ in range(2):
        runs("--conductor-config", "conductor.toml", "--conductor-stack", "web").assert_outcomes(
            passed=1
        )
    report = summary(pytester.path)
    kept = pytester.path / "logs" / "runs"
    (only,) = kept.iterdir()
    assert report["kept_in"] == str(only)
    assert json.loads((only / "summary.json").read_text())["run_id"] == report["run_id"]
    assert (only / "web.log").exists()


def test_a_plugin_run_draws_its_timeline_like_conductor_run_does(pytester, runs):
    """The plugin wrote summary.json without the run's start and phases: every time on
    the timeline was null, and report.html's lanes were empty."""
    web_config(pytester.path)
    pytester.makepyfile(
        test_slow="""
        import time
        def test_slow(conductor_stack):
            time.sleep(0.5)
        """
    )
    result = runs("--conductor-config", "conductor.toml", "--conductor-stack", "web")
    result.assert_outcomes(passed=1)
    report = summary(pytester.path)
    web = report["services"]["web"]
    assert [e["status"] for e in web["timeline"]] == ["starting", "started", "ready"]
    assert all(e["t"] is not None for e in web["timeline"])
    assert web["outcome"] == "stopped"
    tests, teardown = report["phases"]["command"], report["phases"]["teardown"]
    assert web["timeline"][-1]["t"] <= tests[0] < tests[1] <= teardown[0] <= teardown[1]
    assert tests[1] - tests[0] >= 0.5
    text = (pytester.path / "logs" / "report.html").read_text(encoding="utf-8")
    pieces = lane_spans(text, "web")
    assert [phase for phase, _, _ in pieces] == ["starting", "started", "ready", "stopping"]
    ready = next((a, b) for phase, a, b in pieces if phase == "ready")
    assert ready[1] - ready[0] >= 0.5  # ready through the tests
    tests_lane = re.search(r"<title>COMMAND: ([\d.]+)s → ([\d.]+)s, exit 0</title>", text)
    assert tests_lane is not None, text  # the tests' own lane
    assert float(tests_lane.group(2)) - float(tests_lane.group(1)) >= 0.5
    assert re.search(r"<title>teardown: [\d.]+s → [\d.]+s</title>", text), text


def test_xdist_two_workers_share_one_set_of_service_pids(pytester, runs):
    web_config(pytester.path)
    pytester.makepyfile(
        test_shared="""
        import os, urllib.request
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_worker(conductor_stack, worker_id, n, tmp_path_factory):
            urllib.request.urlopen(conductor_stack.url("web") + f"/{worker_id}")
            seen = tmp_path_factory.getbasetemp().parent / f"seen-{worker_id}-{n}"
            seen.write_text(os.environ["WEB_URL"])
        """
    )
    result = runs("--conductor-config", "conductor.toml", "--conductor-stack", "web", "-n", "2")
    result.assert_outcomes(passed=4)
    log = (pytester.path / "logs" / "web.log").read_text()
    # One web process served both workers: it said hello once, and both asked it.
    assert len(re.findall(r"^fake http pid \d+$", log, re.M)) == 1, log
    assert "request /gw0" in log, log
    assert "request /gw1" in log, log
    seen = list(pytester.path.parent.glob("**/seen-gw*"))
    assert {p.name.split("-")[1] for p in seen} == {"gw0", "gw1"}
    assert {p.read_text() for p in seen} == {summary(pytester.path)["services"]["web"]["url"]}
    assert len(list((pytester.path / "logs").glob("run-*"))) == 0  # no second stack


@pytest.mark.parametrize(
    ("body", "args", "status"),
    [
        ("def test_fails():\n    assert False\ndef test_next():\n    pass", ("-x",), 1),
        (
            "import pytest\n"
            "@pytest.fixture(scope='session')\n"
            "def broken(conductor_stack):\n"
            "    raise RuntimeError('fixture broke')\n"
            "def test_uses(broken):\n"
            "    pass",
            (),
            1,
        ),
    ],
    ids=["failure-with-x", "error-in-a-fixture"],
)
def test_teardown_however_the_run_ends(pytester, runs, body, args, status):
    web_config(pytester.path)
    pytester.makepyfile(test_ends=body)
    result = runs("--conductor-config", "conductor.toml", "--conductor-stack", "web", *args)
    assert result.ret == status
    web = summary(pytester.path)["services"]["web"]
    assert web["stopped"] == "stopped by SIGTERM"
    assert gone(web["pid"])


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 2), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_teardown_on_ctrl_c_and_sigterm(pytester, runs, conductor, sig, status):
    web_config(pytester.path)
    started = pytester.path / "started"
    pytester.makepyfile(
        test_waits=f"""
        import pathlib, time
        def test_waits(conductor_stack):
            pathlib.Path({str(started)!r}).write_text(conductor_stack.url("web"))
            time.sleep(120)
        """
    )
    # No faulthandler_timeout here: its watchdog is a thread that does not block SIGINT,
    # and a signal the kernel hands to it never wakes the main thread's sleep (CI hung).
    proc = pytest_in_its_session(
        pytester,
        conductor,
        preexec_fn=default_sigint,  # as in a terminal's foreground
    )
    try:
        wait_for(started.exists, 60, "the test to start")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        threads = signal_states(proc.pid)
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"pytest did not end after {sig.name}:\n{threads}\n{out}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, out
    web = summary(pytester.path)["services"]["web"]
    assert web["stopped"] == "stopped by SIGTERM", out
    assert gone(web["pid"])


def test_a_service_that_fails_to_start_ends_the_run_in_one_line(pytester, runs):
    web_config(pytester.path, web={"command": fake("crash", "--code", "3"), "port": "auto"})
    pytester.makepyfile(test_never="def test_never():\n    raise AssertionError('ran')\n")
    result = runs("--conductor-config", "conductor.toml", "--conductor-stack", "web")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == ["ERROR: conductor: service 'web' exited with status 3 before it was ready"]
    assert "web | boom: something went wrong" in err  # the log tail
    assert "Traceback" not in err + result.stdout.str()
    assert "ran" not in result.stdout.str()


def test_bad_requests_are_usage_errors_naming_what_is_wrong(pytester, runs):
    web_config(pytester.path)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = runs("--conductor-config", "conductor.toml", "--conductor-stack", "web,nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown service 'nope'" in result.stderr.str()
    result = runs(
        "--conductor-config", "conductor.toml", "--conductor-stack", "web", "--conductor-env", "X"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--conductor-env wants NAME=TEMPLATE, not 'X'" in result.stderr.str()
    assert not (pytester.path / "logs" / "web.log").exists()  # nothing started


def test_a_conftest_hook_asks_for_services(pytester, runs):
    web_config(pytester.path)
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_conductor_services(config):
            return ["web"]
        """
    )
    pytester.makepyfile(
        test_x="def test_x(conductor_stack):\n    assert conductor_stack.has('web')\n"
    )
    result = runs("--conductor-config", "conductor.toml")
    result.assert_outcomes(passed=1)
    assert "conductor: started web" in result.stdout.str()


def test_inside_conductor_run_the_plugin_uses_its_stack(pytester, conductor):
    """nox and invoke wrap pytest in `conductor run`: one stack, the outer one."""
    web_config(
        pytester.path,
        web=WEB,
        other={"command": fake("tcp", "--port", "{port}"), "port": "auto"},
    )
    pytester.makepyfile(
        test_inside="""
        import os
        def test_uses_the_outer_stack(conductor_stack):
            assert conductor_stack.mode == "surrounding"
            assert conductor_stack.url("web") == os.environ["WEB_URL"]
            assert os.environ["SITE"] == os.environ["WEB_URL"] + "/x"

        def test_a_service_the_outer_run_lacks_fails(conductor_stack):
            conductor_stack.url("other")
        """
    )
    toml = str(pytester.path / "conductor.toml")
    args = ["--conductor-config", toml, "--conductor-stack", "web,other"]
    args += ["--conductor-env", "SITE={services.web.url}/x"]
    result = conductor.run(
        "run", "--config", toml, "web", "--",
        PY, "-m", "pytest", *BARE, *args, str(pytester.path),
    )  # fmt: skip
    assert result.code == 1, result.text
    assert "1 failed, 1 passed" in result.out
    assert "conductor: inside `conductor run`" in result.out
    assert "'other' is not available: the surrounding `conductor run` does not provide it" in (
        result.out
    )
    log = (pytester.path / "logs" / "web.log").read_text()
    assert len(re.findall(r"^fake http pid \d+$", log, re.M)) == 1
    assert not list((pytester.path / "logs").glob("run-*"))


def test_the_plugin_attaches_to_a_live_up_and_stops_nothing(pytester, runs, up):
    """The attached run's environment is what a started one gets: addresses, and the
    configuration's [run].env filled from the up's services."""
    config = write_config(
        pytester.path / "conductor.toml",
        {"web": WEB},
        logs_dir="logs",
        run={"env": {"PAGE": "{services.web.url}/page"}},
    )
    live = up(config)
    pytester.makepyfile(
        test_attached=f"""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(2))
        def test_attached(conductor_stack, n):
            assert conductor_stack.mode == "attached"
            assert conductor_stack.url("web") == os.environ["WEB_URL"] == {live.url!r}
            assert os.environ["PAGE"] == {live.url!r} + "/page"
        """
    )
    result = runs("--conductor-config=conductor.toml", "--conductor-stack=web", "-n", "2")
    result.assert_outcomes(passed=2)
    pid = live.proc.pid
    assert f"conductor: attached to the `conductor up` (pid {pid}) in {live.logs}: web" in (
        result.stdout.str()
    )
    assert live.alive()
    assert not (live.logs / "summary.json").exists()  # the up's folder is left alone


def test_the_plugin_attaches_only_to_an_up_that_runs_what_it_needs(pytester, runs, up):
    peer = {"command": fake("tcp", "--port", "{port}"), "port": "auto"}
    live = up(web_config(pytester.path, web=WEB, peer=peer), "web")
    pytester.makepyfile(
        test_own=f"""
        def test_own(conductor_stack):
            assert conductor_stack.mode == "started"
            assert conductor_stack.url("web") != {live.url!r}
        """
    )
    args = ("--conductor-config=conductor.toml", "--conductor-stack=web,peer")
    result = runs(*args, "--conductor-attach=require")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.startswith("ERROR")] == [
        f"ERROR: conductor: --attach=require: the `conductor up` in {live.logs} runs web; "
        "this run also needs peer"
    ]
    result = runs(*args)  # auto: a stack of its own, in a subfolder of the busy one
    result.assert_outcomes(passed=1)
    assert "(not attached: the `conductor up` in" in result.stdout.str()
    assert list(live.logs.glob("run-*/summary.json"))
    assert live.alive()


def test_sigterm_to_the_xdist_controller_stops_the_stack_within_its_stop_timeout(
    pytester, runs, conductor
):
    """xdist waits up to 10 s for its workers after the controller is told to exit; the
    stack must not wait with it (issue 18, item 7)."""
    web_config(pytester.path, web={**WEB, "stop_timeout": 1})
    started = pytester.path / "started"
    pytester.makepyfile(
        test_waits=f"""
        import pathlib, time
        def test_waits(conductor_stack, worker_id):
            pathlib.Path({str(started)!r}).with_suffix("." + worker_id).write_text(
                conductor_stack.url("web")
            )
            time.sleep(120)
        def test_waits_too(conductor_stack, worker_id):
            test_waits(conductor_stack, worker_id)
        """
    )
    proc = pytest_in_its_session(pytester, conductor, "-n", "2")
    try:
        wait_for(lambda: len(list(pytester.path.glob("started.gw*"))) == 2, 60, "both tests")
        record = json.loads((pytester.path / "logs" / ".conductor-run.json").read_text())
        (web,) = record["processes"]
        proc.send_signal(signal.SIGTERM)  # the controller only, as a CI runner may
        sent = time.monotonic()
        while not gone(web["pid"]):
            assert time.monotonic() - sent < 1 + 3, "the stack waited for xdist's workers"
            time.sleep(0.01)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: this test's pytest
            proc.communicate()
