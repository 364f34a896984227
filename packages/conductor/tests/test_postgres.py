"""kind = "postgres" against the real server binaries (initdb, postgres, createdb)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conductor.postgres.binaries import find_bindir
from support import PY, gone, kill_conductor_and_its_watchdog, needs_postgres, wait_for

pytestmark = [pytest.mark.conductor, pytest.mark.postgres]

ARTIFACTS = ("conductor.log", "summary.json", "report.html")


@needs_postgres
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
    # Deleting it is a wait of teardown after the server stopped, named on its own.
    assert re.search(rf"db: removed its run folder {re.escape(folders[0])} in [\d.]+s", events)


def test_missing_binaries_say_what_to_install(config, monkeypatch):
    from conductor import plan
    from conductor.config.loading import load_config
    from conductor.errors import ConfigError

    path = config({"db": {"kind": "postgres"}})
    monkeypatch.setattr(plan.binaries, "find_bindir", lambda version=None: None)
    with pytest.raises(ConfigError) as info:
        plan.make_plan(load_config(path), check_ports=False)
    message = str(info.value)
    assert "service 'db', key 'kind'" in message
    assert "apt-get install postgresql" in message
    assert "TEST_DATABASE_URL" in message


def test_optional_postgres_without_binaries_is_skipped(config, monkeypatch):
    from conductor import plan
    from conductor.config.loading import load_config

    path = config({"db": {"kind": "postgres", "optional": True}})
    monkeypatch.setattr(plan.binaries, "find_bindir", lambda version=None: None)
    result = plan.make_plan(load_config(path), check_ports=False)
    assert "db" in result.skipped


@needs_postgres
def test_password_cluster_demands_it_and_summary_hides_it(conductor, config, tmp_path):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    config({"db": {"kind": "postgres", "password": "pw-Zq9/x"}})
    check = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select 1"'
    without = 'PGPASSWORD= "{0}" --no-psqlrc -At -w -h 127.0.0.1 -p "$DB_PORT" -U postgres -d postgres -c "select 1"'
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


@needs_postgres
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


def sql_files(root: Path, **files: str) -> list[str]:
    """Write db/NAME.sql files; their paths as the config names them."""
    (root / "db").mkdir(exist_ok=True)
    for name, text in files.items():
        (root / "db" / f"{name}.sql").write_text(text)
    return [f"db/{name}.sql" for name in files]


@needs_postgres
def test_custom_user_init_files_and_settings(conductor, config, tmp_path):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    init = sql_files(
        tmp_path,
        schema="create table items (id int primary key, name text not null);\n",
        seed="insert into items values (1, 'one'), (2, 'two');\n",  # needs schema first
    )
    config(
        {
            "db": {
                "kind": "postgres",
                "version": "15",
                "user": "{env.APP_USER}",
                "password": "pw-Custom1",
                "database": "appdb",
                "init": init,
                "settings": {"max_connections": "37", "work_mem": "5MB", "jit": False},
            }
        }
    )
    conductor.env["APP_USER"] = "app_owner"
    query = (
        "select current_user, current_database(), "
        "(select rolsuper from pg_roles where rolname = current_user), "
        "(select datdba::regrole from pg_database where datname = current_database()), "
        "current_setting('max_connections'), current_setting('work_mem'), "
        "current_setting('jit'), (select string_agg(name, ',' order by id) from items)"
    )
    # Over TCP with the URL, and over the Unix socket with the separate templates.
    tcp = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "{query}"'
    unix = f'"{psql}" --no-psqlrc -At -h "$SOCK" -p "$DB_PORT" -U "$U" -d "$D" -c "select 1"'
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--env",
        "SOCK={services.db.socket_dir}",
        "--env",
        "U={services.db.user}",
        "--env",
        "D={services.db.database}",
        "--env",
        "PW_LENGTH_CHECK={services.db.password}",
        "--",
        "sh",
        "-c",
        f'{tcp} && {unix} && test "$PW_LENGTH_CHECK" = pw-Custom1 && echo SOCKET-OK',
    )
    assert result.code == 0, result.text
    assert result.out.splitlines() == [
        "app_owner|appdb|t|app_owner|37|5MB|off|one,two",
        "1",
        "SOCKET-OK",
    ]
    assert "pw-Custom1" not in result.err
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["services"]["db"]["url"].startswith("postgresql://app_owner:***@127.0.0.1:")
    assert summary["services"]["db"]["url"].endswith("/appdb")
    assert "ran 2 init file(s)" in (tmp_path / "logs" / "conductor.log").read_text()


@needs_postgres
def test_a_failing_init_file_is_125_naming_it_and_quoting_the_error(conductor, config, tmp_path):
    init = sql_files(
        tmp_path,
        good="create table fine (x int);\n",
        bad="select 1;\ninsert into no_such_table values (1);\n",
        never="create table never_made (x int);\n",
    )
    config({"db": {"kind": "postgres", "init": init}})
    result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 125, result.text
    assert "init file 'db/bad.sql' failed at line 2" in result.err
    assert 'ERROR:  relation "no_such_table" does not exist' in result.err
    assert "Traceback" not in result.text


@needs_postgres
def test_a_missing_init_file_is_a_configuration_error(conductor, config, tmp_path):
    config({"db": {"kind": "postgres", "init": ["db/nope.sql"]}})
    result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 2, result.text
    assert "service 'db', key 'init[0]'" in result.err
    assert f"{tmp_path / 'db' / 'nope.sql'} does not exist" in result.err


@needs_postgres
def test_a_version_that_is_not_installed_lists_those_that_are(conductor, config, tmp_path):
    from conductor.postgres import binaries

    config({"db": {"kind": "postgres", "version": "99"}})
    result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 2, result.text
    assert "service 'db', key 'version'" in result.err
    installed = ", ".join(binaries.installed())
    assert f"PostgreSQL 99 is not installed here (installed: {installed})" in result.err
    assert not (tmp_path / "logs").exists()


@needs_postgres
def test_clean_after_sigkill_stops_the_cluster_and_removes_its_folder(conductor, config, tmp_path):
    """The server keeps the run's mark (its helpers overwrite theirs with their process
    titles, but they are in its group), and its folder is one conductor made."""
    config({"db": {"kind": "postgres"}})
    go = tmp_path / "go"
    wait = (
        "import pathlib, sys, time\ngo = pathlib.Path(sys.argv[1])\n"
        "go.with_suffix('.running').write_text('yes')\n"
        "while not go.exists(): time.sleep(0.01)"
    )
    run = conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", wait, str(go))
    wait_for(lambda: go.with_suffix(".running").exists(), timeout=60, what="the command")
    record = json.loads((tmp_path / "logs" / ".conductor-run.json").read_text())
    (folder,) = record["folders"]
    (server,) = record["processes"]
    # conductor and its watchdog: the server and the command keep running
    kill_conductor_and_its_watchdog(run, tmp_path / "logs")
    assert Path(folder).is_dir()
    result = conductor.run("clean", "--config", "conductor.toml")
    assert result.code == 0, result.text
    assert f"pid {server['pid']}" in result.out
    assert f"removed {folder}" in result.out
    assert result.err == ""
    assert not Path(folder).exists()
    assert gone(server["pid"])


@needs_postgres
def test_a_socket_path_too_long_for_the_os_says_to_shorten_tmpdir(conductor, config, tmp_path):
    """A Unix socket path holds at most 107 bytes; a long TMPDIR must be one line and 2,
    not a server that fails to start (125) with the reason buried in its log."""
    import shutil
    import tempfile

    # Under /tmp (not tmp_path), so that the server's user could reach it if it were short.
    long_tmp = Path(tempfile.mkdtemp(prefix="t" * 100))
    try:
        long_tmp.chmod(0o755)
        conductor.env["TMPDIR"] = str(long_tmp)
        config({"db": {"kind": "postgres"}})
        result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    finally:
        shutil.rmtree(long_tmp)
    assert result.code == 2, result.text
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "service 'db'" in lines[0]
    assert "shorten TMPDIR" in lines[0]
    assert "Traceback" not in result.text


@needs_postgres
def test_a_server_without_a_unix_socket_is_ready_without_the_handshake(conductor, config):
    """Readiness completes a startup handshake over the run's Unix socket; a setting
    that leaves no socket there (TCP only) must not make the wait for it endless."""
    psql = find_bindir() / "psql"  # type: ignore[operator]
    config(
        {
            "db": {
                "kind": "postgres",
                "ready_timeout": 20,
                "settings": {"unix_socket_directories": ""},
            }
        }
    )
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--",
        "sh",
        "-c",
        f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select 1"',
    )
    assert result.code == 0, result.text
    assert result.out.strip() == "1"
    log = (conductor.cwd / "logs" / "conductor.log").read_text()
    assert "ready without a connection" in log


def test_the_handshake_asks_again_while_the_server_cannot_take_connections(tmp_path, monkeypatch):
    """A fake server: 57P03 (starting up) is asked again, ReadyForQuery proves, any
    other error is Refused with its SQLSTATE and message; no socket is False."""
    import asyncio
    import struct

    from conductor.postgres import handshake

    monkeypatch.chdir(tmp_path)  # a relative socket name: tmp_path may pass 107 bytes
    answers = [
        (b"E", b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"),
        (b"R", bytes(4)),
        (b"Z", b"I"),
        (b"E", b"SFATAL\0VFATAL\0CXX000\0Mrelation mapping file is bad\0\0"),
    ]
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        seen.append(await reader.readexactly(length - 4))
        kind, payload = answers.pop(0)
        writer.write(kind + struct.pack("!i", len(payload) + 4) + payload)
        if kind == b"R":
            kind, payload = answers.pop(0)
            writer.write(kind + struct.pack("!i", len(payload) + 4) + payload)
        await writer.drain()
        await reader.read()  # Terminate, or the client's close
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(serve, "s")
        async with server:
            assert await handshake.prove(Path("s"), "app", "appdb") is True
            with pytest.raises(handshake.Refused) as refused:
                await handshake.prove(Path("s"), "app", "appdb")
        assert refused.value.code == "XX000"
        assert refused.value.message == "FATAL:  relation mapping file is bad"
        assert await handshake.prove(Path("nothing-here"), "app", "appdb") is False

    asyncio.run(asyncio.wait_for(main(), 20))
    assert len(seen) == 3
    assert seen[0][4:] == b"user\0app\0database\0appdb\0application_name\0conductor\0\0"


@needs_postgres
def test_psql_output_of_init_goes_to_the_log_as_it_comes(conductor, config, tmp_path):
    """An init file that prints 100 MB of NOTICEs: they reach db.log, and conductor's
    peak memory (VmHWM of COMMAND's parent, conductor itself) stays far below them
    (buffered, 200 MB took conductor to 444 MB)."""
    notices = 100_000  # of 1000 characters each
    init = sql_files(
        tmp_path,
        loud=f"do $$ begin for i in 1..{notices} loop "
        "raise notice '%', repeat('x', 1000); end loop; end $$;\n",
    )
    config({"db": {"kind": "postgres", "init": init}})
    peak = "grep VmHWM /proc/$PPID/status; tr '\\0' ' ' < /proc/$PPID/cmdline"
    result = conductor.run("run", "--config", "conductor.toml", "--", "sh", "-c", peak)
    assert result.code == 0, result.text
    assert "-m conductor run" in result.out  # the parent read is conductor
    kib = int(re.search(r"VmHWM:\s+(\d+) kB", result.out).group(1))  # type: ignore[union-attr]
    log = tmp_path / "logs" / "db.log"
    assert log.stat().st_size > notices * 1000
    assert kib < 80 * 1024, f"conductor peaked at {kib // 1024} MiB"


@needs_postgres
def test_init_ends_when_psql_exits(conductor, config, tmp_path):
    r"""A `\!` child that outlives psql and keeps its stderr open: init is over when
    psql exits, not when that child lets go (it was blamed on the db after 15 s)."""
    child = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(60)"
    init = sql_files(tmp_path, child=f"\\! {PY} -c '{child}' &\nselect 1;\n")
    config({"db": {"kind": "postgres", "init": init, "ready_timeout": 30}})
    result = conductor.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 0, result.text
    assert result.seconds < 20, result.text
    assert "ran 1 init file(s)" in (tmp_path / "logs" / "conductor.log").read_text()
