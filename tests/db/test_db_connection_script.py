"""scripts/test_db_connection.py gives the right one-line diagnosis, and never a password.

The bad cases are real: a port nobody listens on, a cluster that demands a password
(started by conductor with `password = ...`), a database that does not exist, and a
driver that cannot be imported.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conductor import Reporter, Stack, load_config
from tests.optional import POSTGRES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test_db_connection.py"
PASSWORD = "s3cret-Pa55word"

needs_postgres = POSTGRES.needed


def check(url: str, *python_flags: str) -> subprocess.CompletedProcess[str]:
    """The script as people run it; `python_flags` may run code first (see below)."""
    result = subprocess.run(
        [sys.executable, *python_flags, str(SCRIPT), url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    return result


@pytest.fixture(scope="module")
async def password_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A throwaway cluster that demands a password over TCP, like a real server."""
    folder = tmp_path_factory.mktemp("pgpw")
    config_file = folder / "conductor.toml"
    config_file.write_text(
        f'[services.pw]\nkind = "postgres"\ndatabase = "genesis"\npassword = "{PASSWORD}"\n'
    )
    stack = Stack(
        load_config(config_file),
        logs_dir=folder / "logs",
        auto_ports=True,
        reporter=Reporter(quiet=True),
    )
    async with stack:
        yield stack.env["PW_URL"]


def test_good_url_gives_one_line_with_driver_host_database_and_version(
    database_url: str, backend: str
) -> None:
    result = check(database_url)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("database check ok:")
    if backend == "postgresql":
        assert "driver=postgresql+asyncpg host=127.0.0.1 database=genesis_" in line
        assert re.search(r" server=\d+\.\d+\b.* in [\d.]+ ms$", line), line
    else:
        assert "driver=sqlite+aiosqlite" in line
    assert line.endswith(" ms")


def test_refused_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = check(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/genesis")
    assert result.returncode == 1
    assert f"connection refused at 127.0.0.1:{port}" in result.stderr


@needs_postgres
def test_wrong_password(password_cluster: str) -> None:
    result = check(password_cluster.replace(PASSWORD, "wrong-" + PASSWORD[::-1]))
    assert result.returncode == 1
    assert "authentication failed for user 'postgres'" in result.stderr


@needs_postgres
def test_right_password(password_cluster: str) -> None:
    result = check(password_cluster)
    assert result.returncode == 0, result.stderr
    assert "database=genesis" in result.stdout


@needs_postgres
def test_missing_database(password_cluster: str) -> None:
    result = check(password_cluster.rsplit("/", 1)[0] + "/no_such_db")
    assert result.returncode == 1
    assert "database missing: 'no_such_db' does not exist" in result.stderr


def test_missing_driver() -> None:
    # As if asyncpg were not installed: an entry of None makes `import asyncpg` fail.
    block = "import sys, runpy; sys.modules['asyncpg'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    result = check(f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/genesis", "-c", block)
    assert result.returncode == 1
    assert "driver not installed: the Python module 'asyncpg'" in result.stderr


def test_unknown_driver_name() -> None:
    result = check("postgresql+nosuchdriver://postgres@127.0.0.1/genesis")
    assert result.returncode == 1
    assert "driver not installed" in result.stderr


def test_no_url_at_all() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "set TEST_DATABASE_URL or DATABASE_URL" in result.stderr


def test_name_resolution_failure_is_named() -> None:
    # Diagnosed from the exception alone: a real lookup would ask a DNS server off
    # this machine, which these tests never do.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import test_db_connection as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    target = script.describe("postgresql://u:p@db.internal:5432/app")
    error = OSError("connect failed")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert script.diagnose(error, target).startswith("name does not resolve: host 'db.internal'")
