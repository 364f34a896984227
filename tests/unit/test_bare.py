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
HIDE_POSTGRES = [sys.executable, "-m", "tools.absent", "postgres", "--"]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
hides = pytest.mark.skipif(CANNOT_HIDE is not None, reason=f"{CANNOT_HIDE}")

SHOW = """
import json, shutil
from pathlib import Path
from conductor.postgres import find_bindir
folders = ["/usr/lib/postgresql", "/usr/lib/chromium"]
print(json.dumps({
    "which": {n: shutil.which(n) for n in ("chromium", "redis-server", "initdb", "postgres")},
    "bindir": None if find_bindir() is None else str(find_bindir()),
    "folders": {f: sorted(p.name for p in Path(f).iterdir()) if Path(f).is_dir() else None
                for f in folders},
}))
"""


def absent_run(programs: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.absent", programs, "--", *command],
        cwd=ROOT,
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
    done = subprocess.run(
        [*HIDE_POSTGRES, sys.executable, "scripts/stage.py", "--check-db", "--", "true"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
