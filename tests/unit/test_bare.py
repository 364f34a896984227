"""The bare-machine check's parts: programs really hidden (tools/absent.py), the stage
check on a machine without PostgreSQL, and the reading of what a bare run left
(tools/bare.py) against real pytest reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import absent, bare

ROOT = Path(__file__).resolve().parents[2]
CANNOT_HIDE = absent.why_not_here()
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
hides = pytest.mark.skipif(CANNOT_HIDE is not None, reason=f"{CANNOT_HIDE}")

SHOW = """
import json, shutil
from pathlib import Path
from conductor import find_bindir
folders = ["/usr/lib/postgresql", "/usr/lib/chromium"]
print(json.dumps({
    "which": {n: shutil.which(n) for n in ("chromium", "redis-server", "initdb", "postgres")},
    "bindir": None if find_bindir() is None else str(find_bindir()),
    "folders": {f: sorted(p.name for p in Path(f).iterdir()) if Path(f).is_dir() else None
                for f in folders},
}))
"""


def absent_run(
    programs: str, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`command` with `programs` hidden, from the project root; `env` replaces the
    environment when given."""
    return subprocess.run(
        [sys.executable, "-m", "tools.absent", programs, "--", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@hides
def test_hidden_programs_are_not_on_disk_inside_and_are_outside() -> None:
    before = json.loads(subprocess.check_output([sys.executable, "-c", SHOW], text=True))
    done = absent_run("chromium,redis-server,postgres", sys.executable, "-c", SHOW)
    assert done.returncode == 0, done.stderr
    inside = json.loads(done.stdout)
    assert inside["which"] == dict.fromkeys(inside["which"])
    assert inside["bindir"] is None
    assert all(not names for names in inside["folders"].values() if names is not None)
    after = json.loads(subprocess.check_output([sys.executable, "-c", SHOW], text=True))
    assert after == before  # nothing outside the namespace changed


@hides
def test_only_the_named_program_is_hidden() -> None:
    done = absent_run("redis-server", sys.executable, "-c", SHOW)
    assert done.returncode == 0, done.stderr
    inside = json.loads(done.stdout)
    assert inside["which"]["redis-server"] is None
    assert inside["which"]["initdb"] == shutil.which("initdb")
    assert inside["which"]["chromium"] == shutil.which("chromium")


@pytest.mark.parametrize("argv", [["nope", "--", "true"], ["redis-server", "true"], ["postgres"]])
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.absent", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@hides
def test_the_database_check_without_postgresql_checks_the_sqlite_fallback() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "DATABASE_URL")}
    done = absent_run(
        "postgres", sys.executable, "scripts/stage.py", "--check-db", "--", "true", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "database check ok: driver=sqlite+aiosqlite" in done.stdout


REPORTED = """
import pytest

def test_runs():
    pass

def test_needs_a_program():
    pytest.skip("not installed: Chromium (Debian: apt-get install chromium)")

@pytest.mark.skipif(True, reason="not installed: redis-server (Debian: apt-get install redis-server)")
def test_marked():
    pass

def test_vague():
    pytest.skip("no browser")
"""


def test_a_skip_that_names_no_missing_program_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "test_reported.py").write_text(REPORTED)
    report = tmp_path / "report.xml"
    subprocess.run(
        [*PYTEST, "-q", f"--junitxml={report}", "test_reported.py"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    reasons = bare.skips(report)
    assert len(reasons) == 3
    problems = bare.skip_problems(reasons)
    assert len(problems) == 1
    assert "test_vague" in problems[0]
    assert "'no browser'" in problems[0]


def test_a_service_that_ran_though_its_program_is_hidden_is_a_problem(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    services = {"db": {"status": "skipped"}, "cache": {"status": "ready"}}
    summary.write_text(json.dumps({"services": services}))
    problems = bare.service_problems(summary, ["db", "cache"])
    assert len(problems) == 1
    assert "service cache ran" in problems[0]
    assert bare.service_problems(tmp_path / "none.json", ["db"])[0].startswith(str(tmp_path))


FLOOR = "from tools.coverage_floor import report_args; print(report_args())"


@hides
def test_the_coverage_floor_holds_only_where_postgresql_is_installed() -> None:
    """A bare machine skips conductor's PostgreSQL tests: the report there must not fail
    `nox -t full` on a program the README calls optional; CI's machine holds the floor."""
    here = subprocess.run([sys.executable, "-c", FLOOR], cwd=ROOT, capture_output=True, text=True)
    bare_machine = absent_run("postgres", sys.executable, "-c", FLOOR)
    assert bare_machine.returncode == 0, bare_machine.stderr
    assert bare_machine.stdout.strip() == "['report', '--fail-under=0']"
    if shutil.which("initdb") or Path("/usr/lib/postgresql").is_dir():
        assert here.stdout.strip() == "['report']"


# --- found by the adversarial review ---------------------------------------------------
# What the container engine mounts for containers that other tests (conductor's
# kind = "container" suite, on another xdist worker) start and remove meanwhile.
ENGINE_MOUNTS = ("/var/lib/containers/", "/run/netns/", "/run/containers/", "/run/libpod/")


def mounts() -> list[str]:
    """The mount table as a process outside any namespace tools.absent made sees it,
    without the container engine's own mounts, which come and go with other tests."""
    points = (line.split()[4] for line in Path("/proc/1/mountinfo").read_text().splitlines())
    return sorted(p for p in points if not p.startswith(ENGINE_MOUNTS))


@hides
def test_nothing_is_left_on_disk_or_mounted_outside(tmp_path: Path) -> None:
    """The folder copies live in the namespace's own tmpfs: each run left a folder of
    links per covered PATH folder in /tmp (41 of them after a day's runs)."""
    before = mounts()
    done = absent_run(
        "chromium,redis-server,postgres", "true", env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert mounts() == before


@hides
@pytest.mark.parametrize(
    ("command", "status"), [("/nonexistent/command", 127), ("./README.md", 126)]
)
def test_a_command_that_cannot_run_is_one_line_and_the_shells_status(
    command: str, status: int
) -> None:
    done = absent_run("redis-server", command)
    assert done.returncode == status
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert command in done.stderr


@hides
def test_a_command_killed_by_a_signal_exits_128_plus_its_number() -> None:
    done = absent_run("redis-server", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + 15, done.stderr  # was 241: sys.exit(-15)


WAITS = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
signal.signal(signal.SIGINT, lambda *_: sys.exit(8))
print(os.getpid(), flush=True)
time.sleep(60)
"""


@hides
@pytest.mark.parametrize(("sent", "status"), [(15, 7), (2, 8)])
def test_a_signal_to_absent_reaches_the_command(sent: int, status: int, tmp_path: Path) -> None:
    """SIGTERM orphaned the command (still running, reparented to init); SIGINT printed
    a traceback and SIGKILLed it, so it could not clean up."""
    absent = subprocess.Popen(
        [sys.executable, "-m", "tools.absent", "redis-server", "--", sys.executable, "-c", WAITS],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert absent.stdout is not None
    command = int(absent.stdout.readline())
    try:
        absent.send_signal(sent)
        assert absent.wait(timeout=30) == status
        assert "Traceback" not in absent.communicate()[1]
        assert not running(command)
        assert list(tmp_path.iterdir()) == []
    finally:
        if running(command):
            os.kill(command, 9)
        if absent.poll() is None:
            absent.kill()
        absent.wait(timeout=10)


def running(pid: int) -> bool:
    """Whether `pid` is still the WAITS command this test started (not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and WAITS.encode() in cmdline


@hides
def test_a_chromium_named_by_CHROMIUM_is_hidden_too(tmp_path: Path) -> None:
    """tests/optional.py looks at $CHROMIUM first: a Chromium only it names stayed."""
    chrome = tmp_path / "opt" / "chrome"
    chrome.parent.mkdir()
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    (tmp_path / "opt" / "kept").write_text("")
    show = "import os; print(os.path.exists(os.environ['CHROMIUM']), os.listdir(os.path.dirname(os.environ['CHROMIUM'])))"
    done = absent_run(
        "chromium", sys.executable, "-c", show, env={**os.environ, "CHROMIUM": str(chrome)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False ['kept']"
    assert chrome.is_file()  # outside, untouched


@hides
def test_without_PATH_the_default_search_path_is_hidden() -> None:
    """With PATH unset, the command is looked up in os.defpath, so that is what to hide
    (it said 'still found after hiding: /bin/redis-server' and exit 2)."""
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    done = absent_run("redis-server", sys.executable, "-c", SHOW, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["which"]["redis-server"] is None


ELSEWHERE = """
mount -t tmpfs tmpfs /opt
bin=/opt/homebrew/opt/postgresql@99/bin
mkdir -p $bin
for name in initdb postgres; do printf '#!/bin/sh\\n' > $bin/$name; chmod +x $bin/$name; done
exec "$0" -m tools.absent postgres -- "$0" -c \\
    'from conductor import find_bindir; print(find_bindir())'
"""


@hides
def test_postgres_is_hidden_wherever_conductor_looks_for_it() -> None:
    """find_bindir also looks in /usr/pgsql-*/bin and Homebrew's folders: a server
    there stayed found (on a machine of this kind, inside a namespace of the test's own
    with a tmpfs /opt, Homebrew's folder holding a fake server)."""
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", ELSEWHERE, sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_absent_hides_every_folder_conductor_looks_in() -> None:
    from conductor import POSTGRES_BIN_FOLDERS

    folders = absent.PROGRAMS["postgres"].folders
    assert all(pattern.removesuffix("/bin") in folders for pattern in POSTGRES_BIN_FOLDERS)


@pytest.mark.parametrize(
    "text",
    ["[]", '{"services": []}', '{"services": {"db": "skipped"}}', "{", ""],
)
def test_a_malformed_summary_is_one_problem_not_a_traceback(text: str, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(text)
    problems = bare.service_problems(summary, ["db"])
    assert len(problems) == 1
    assert problems[0].startswith(str(summary))


@pytest.mark.parametrize("text", ["", "<testsuites><testsuite>", "not xml"])
def test_a_malformed_junit_report_is_one_problem_not_a_traceback(text: str, tmp_path: Path) -> None:
    (tmp_path / "_e2e_logs" / "db").mkdir(parents=True)
    (tmp_path / "_e2e_logs" / "db" / "summary.json").write_text(
        json.dumps({"services": {"db": {"status": "skipped"}}})
    )
    report = tmp_path / "db.xml"
    report.write_text(text)
    problems = bare.check_stage(bare.Stage("db", ("db",)), tmp_path, report)
    assert len(problems) == 1
    assert str(report) in problems[0]


def test_a_report_of_no_tests_is_a_problem(tmp_path: Path) -> None:
    """A session whose pytest ran nothing (every test deselected, say) proves nothing."""
    (tmp_path / "test_none.py").write_text("def test_one():\n    pass\n")
    report = tmp_path / "db.xml"
    subprocess.run(
        [*PYTEST, "-q", "-k", "nothing_matches", f"--junitxml={report}", "test_none.py"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    (tmp_path / "_e2e_logs" / "db").mkdir(parents=True)
    (tmp_path / "_e2e_logs" / "db" / "summary.json").write_text(
        json.dumps({"services": {"db": {"status": "skipped"}}})
    )
    problems = bare.check_stage(bare.Stage("db", ("db",)), tmp_path, report)
    assert any("no test ran" in p for p in problems), problems
