"""The database check's hints fit where the URL came from, and name real packages."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from genesis import dbcheck

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test_db_connection.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_db_connection", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = load_script()


@pytest.fixture
def check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """The script's one line, with only the given database URL variables set."""

    def run(*args: str, **env: str) -> str:
        for name in ("TEST_DATABASE_URL", "DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        status = SCRIPT_MODULE.main(list(args))
        out, err = capsys.readouterr()
        assert status in (1, 2), out
        assert len(err.strip().splitlines()) == 1, err
        return err

    return run


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return f"postgresql://postgres@127.0.0.1:{sock.getsockname()[1]}/genesis"


def test_a_dead_server_in_test_database_url_names_the_variable_not_nox(
    check: Callable[..., str],
) -> None:
    """While TEST_DATABASE_URL is set, nox -s db starts no database: no such hint."""
    line = check(TEST_DATABASE_URL=refused_url())
    assert "connection refused at 127.0.0.1:" in line
    assert "fix the port in TEST_DATABASE_URL" in line
    assert "nox" not in line


def test_a_dead_server_given_as_argument_names_the_url(check: Callable[..., str]) -> None:
    line = check(refused_url())
    assert "fix the port in the URL" in line
    assert "nox" not in line


def test_no_url_at_all_is_where_nox_starts_a_throwaway_database(
    check: Callable[..., str],
) -> None:
    assert "nox -s db" in check()


async def failure(url: str) -> str:
    """The diagnosis of what the application's engine raises for `url` (on the session's
    one loop: asyncio.run here would leave the main thread without one)."""
    try:
        await dbcheck.check(url)
    except Exception as exc:
        return dbcheck.diagnose(exc, dbcheck.describe(url))
    raise AssertionError(f"{url} connected")


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
async def test_mysql_names_real_async_driver_packages(scheme: str) -> None:
    line = await failure(f"{scheme}://user:pw@127.0.0.1:1/genesis")
    assert "pip install MySQLdb" not in line
    assert "(mysqlclient)" in line  # what the MySQLdb module is called on PyPI
    assert f"{scheme}+aiomysql:// (pip install aiomysql)" in line
    assert f"{scheme}+asyncmy:// (pip install asyncmy)" in line


async def test_a_sync_driver_that_is_installed_gets_the_same_hint(tmp_path: Path) -> None:
    """sqlite's pysqlite is always installed, and still unusable with asyncio."""
    line = await failure(f"sqlite+pysqlite:///{tmp_path}/genesis.db")
    assert "driver not async" in line
    assert "sqlite+aiosqlite:// (pip install aiosqlite)" in line


async def test_a_missing_async_driver_is_installed_by_its_package_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Missing for this test whatever is installed (pytest-postgresql, in the bench group,
    # brings psycopg): a None entry makes `import psycopg` raise ImportError.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    line = await failure("postgresql+psycopg://postgres@127.0.0.1:1/genesis")
    assert "driver not installed" in line
    assert "pip install 'psycopg[binary]'" in line
