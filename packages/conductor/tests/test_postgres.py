"""kind = "postgres" against the real server binaries (initdb, postgres, createdb)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conductor.postgres import find_bindir
from support import PY

pytestmark = [pytest.mark.conductor, pytest.mark.postgres]

ARTIFACTS = ("conductor.log", "summary.json", "report.html")

needs_server = pytest.mark.skipif(
    find_bindir() is None, reason="PostgreSQL server binaries not installed"
)


@needs_server
def test_throwaway_cluster_serves_a_database_and_is_removed(conductor, config, tmp_path):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    assert psql.exists()
    config(
        {
            "db": {"kind": "postgres", "database": "genesis_test"},
            "app": {
                "command": [
                    PY,
                    "-c",
                    "import os, time; print(os.environ['DATABASE_URL']); time.sleep(60)",
                ],
                "env": {"DATABASE_URL": "{services.db.url}"},
                "depends_on": ["db"],
            },
        }
    )
    query = "select current_database(), setting from pg_settings where name = 'listen_addresses'"
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "db",
        "--",
        "sh",
        "-c",
        f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "{query}"',
    )
    assert result.code == 0, result.text
    assert "genesis_test|127.0.0.1" in result.out
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    db = summary["services"]["db"]
    assert db["url"] == f"postgresql://postgres@127.0.0.1:{db['port']}/genesis_test"
    assert db["stopped"] == "stopped by SIGINT"
    log = (tmp_path / "logs" / "db.log").read_text()
    assert "database system is ready to accept connections" in log
    events = (tmp_path / "logs" / "conductor.log").read_text()
    folders = re.findall(r"db: run folder (\S+)", events)
    assert folders
    assert all(not Path(folder).exists() for folder in folders)


def test_missing_binaries_say_what_to_install(config, monkeypatch):
    from conductor import plan
    from conductor.config import load_config
    from conductor.errors import ConfigError

    path = config({"db": {"kind": "postgres"}})
    monkeypatch.setattr(plan.postgres, "find_bindir", lambda: None)
    with pytest.raises(ConfigError) as info:
        plan.make_plan(load_config(path), check_ports=False)
    message = str(info.value)
    assert "service 'db', key 'kind'" in message
    assert "apt-get install postgresql" in message
    assert "TEST_DATABASE_URL" in message


def test_optional_postgres_without_binaries_is_skipped(config, monkeypatch):
    from conductor import plan
    from conductor.config import load_config

    path = config({"db": {"kind": "postgres", "optional": True}})
    monkeypatch.setattr(plan.postgres, "find_bindir", lambda: None)
    result = plan.make_plan(load_config(path), check_ports=False)
    assert "db" in result.skipped


@needs_server
def test_password_cluster_demands_it_and_summary_hides_it(conductor, config, tmp_path):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    config({"db": {"kind": "postgres", "password": "pw-Zq9/x"}})
    check = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select 1"'
    without = 'PGPASSWORD= "{0}" --no-psqlrc -At -w -h 127.0.0.1 -p "$DB_PORT" -U postgres -d genesis -c "select 1"'
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--",
        "sh",
        "-c",
        f"{check} && ! {without.format(psql)} 2>/dev/null && echo REFUSED-WITHOUT",
    )
    assert result.code == 0, result.text
    assert "1\nREFUSED-WITHOUT" in result.out  # the URL carries it (quoted); TCP needs it
    summary_text = (tmp_path / "logs" / "summary.json").read_text()
    assert "pw-Zq9" not in summary_text
    assert "postgresql://postgres:***@127.0.0.1:" in summary_text


@needs_server
def test_up_lists_its_urls_without_the_password(conductor, config, tmp_path):
    import signal

    config({"db": {"kind": "postgres", "password": "pw-Zq9/x"}})
    proc = conductor.start("up", "--config", "conductor.toml")
    first = proc.stdout.readline()  # the URL list comes once every service is ready
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, first + out + err
    assert re.fullmatch(r"db: postgresql://postgres:\*\*\*@127\.0\.0\.1:\d+/\w+\n", first)
    logs = tmp_path / "logs"
    for text in (first + out, err, *((logs / n).read_text() for n in ARTIFACTS)):
        assert "pw-Zq9" not in text
