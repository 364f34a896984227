"""The PostgreSQL template cache: its entries on their own (no server needed), and
conductor runs against the real server binaries with a cache that is cold, warm,
damaged, or built by two runs at once. Every test uses its own cache folder."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from conductor.postgres import clusters, template_cache
from conductor.postgres.binaries import find_bindir
from support import Result, needs_postgres

pytestmark = [pytest.mark.conductor, pytest.mark.postgres]


def fake_cluster(folder: Path) -> Path:
    """A folder shaped like a cluster, for the cache's own bookkeeping."""
    (folder / "base" / "1").mkdir(parents=True)
    (folder / "pg_notify").mkdir()  # empty folders must survive the round trip
    (folder / "PG_VERSION").write_text("15\n")
    (folder / "base" / "1" / "1255").write_bytes(os.urandom(70_000))
    (folder / "postgresql.conf").write_text("# settings\n")
    return folder


def stored(tmp_path: Path) -> Path:
    entries = tmp_path / "entries"
    assert template_cache.store(fake_cluster(tmp_path / "made"), entries, "k1", threading.Event())
    return entries / "k1"


def test_an_entry_copies_back_byte_for_byte(tmp_path):
    entry = stored(tmp_path)
    template_cache.copy_out(entry, tmp_path / "copy", None, threading.Event())
    made, copy = tmp_path / "made", tmp_path / "copy"
    assert (copy / "pg_notify").is_dir()
    for name in ("PG_VERSION", "base/1/1255", "postgresql.conf"):
        assert (copy / name).read_bytes() == (made / name).read_bytes()
    assert (copy / "base/1/1255").stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "entries").glob(".build-*"))


@pytest.mark.parametrize(
    "damage",
    ["truncated file", "missing file", "missing PG_VERSION", "no manifest", "bad manifest"],
)
def test_a_damaged_entry_is_doubted(tmp_path, damage):
    entry = stored(tmp_path)
    data = entry / template_cache.DATA
    if damage == "truncated file":
        os.truncate(data / "base/1/1255", 4096)
    elif damage == "missing file":
        (data / "postgresql.conf").unlink()
    elif damage == "missing PG_VERSION":
        (data / "PG_VERSION").unlink()
    elif damage == "no manifest":
        (entry / template_cache.MANIFEST).unlink()
    else:
        (entry / template_cache.MANIFEST).write_text('{"format": 1, "key": "k1", "folders": [')
    with pytest.raises(template_cache.CacheDoubt):
        template_cache.copy_out(entry, tmp_path / "copy", None, threading.Event())


def test_a_manifest_cannot_reach_outside_its_entry(tmp_path):
    entry = stored(tmp_path)
    manifest = json.loads((entry / template_cache.MANIFEST).read_text())
    manifest["files"].append(["../../outside", 1])
    (entry / template_cache.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(template_cache.CacheDoubt, match="outside"):
        template_cache.copy_out(entry, tmp_path / "copy", None, threading.Event())


def test_the_second_store_of_an_entry_keeps_the_first(tmp_path):
    entry = stored(tmp_path)
    before = (entry / template_cache.MANIFEST).stat().st_ino
    again = template_cache.store(tmp_path / "made", tmp_path / "entries", "k1", threading.Event())
    assert again is False
    assert (entry / template_cache.MANIFEST).stat().st_ino == before
    assert [p.name for p in (tmp_path / "entries").iterdir()] == ["k1"]


def test_a_discarded_entry_is_gone_and_a_new_one_can_take_its_place(tmp_path):
    entry = stored(tmp_path)
    template_cache.discard(entry)
    assert list((tmp_path / "entries").iterdir()) == []
    assert template_cache.store(tmp_path / "made", tmp_path / "entries", "k1", threading.Event())


def test_cache_root_follows_xdg_and_ignores_a_relative_value(tmp_path):
    assert template_cache.root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "conductor/postgres"
    assert (
        template_cache.root({"XDG_CACHE_HOME": "relative"})
        == Path.home() / ".cache/conductor/postgres"
    )


def test_only_a_marked_run_folder_of_that_run_is_removed(tmp_path):
    import asyncio
    import tempfile

    from conductor.process import ownership

    mark = ownership.Mark("1" * 32, str(tmp_path / "logs"))
    setup = clusters.Setup(Path("/nonexistent"), clusters.plan_folder(), "u", None, "d")
    cluster = clusters.Cluster("db", setup, "127.0.0.1", 1, mark)
    home = cluster.make_folder()
    try:
        assert Path(tempfile.gettempdir()).resolve() == home.parent
        with pytest.raises(ownership.NotOurs):
            ownership.remove_folder(str(home), ownership.Mark("2" * 32, mark.logs_dir))
        unmarked = tmp_path / "conductor-pg-someone-else"
        unmarked.mkdir()
        with pytest.raises(ownership.NotOurs):
            ownership.remove_folder(str(unmarked), mark)
        assert unmarked.exists()
        assert ownership.remove_folder(str(home), mark)
        assert not home.exists()
    finally:
        asyncio.run(cluster.remove())


def test_a_killed_runs_record_cannot_make_conductor_delete_a_folder(tmp_path):
    """The record is only a file: a folder it names without conductor's marker stays."""
    import asyncio

    from conductor.rundir.run_record import RECORD_NAME, RunDir

    victim = tmp_path / "conductor-pg-precious"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    logs = tmp_path / "logs"
    logs.mkdir()
    record = {"run_id": "dead-run", "processes": [], "folders": [str(victim)]}
    (logs / RECORD_NAME).write_text(json.dumps(record))
    asyncio.run(RunDir(logs).stop_leftovers())
    assert (victim / "keep.txt").read_text() == "mine"


# Against the real server binaries --------------------------------------------------


def run_db(conductor, config, cache: Path, logs: str = "logs") -> tuple[Result, str]:
    """One run with a `db` service and its own cache; (result, its conductor.log)."""
    psql = find_bindir() / "psql"  # type: ignore[operator]
    config({"db": {"kind": "postgres", "database": "cached"}})
    conductor.env["XDG_CACHE_HOME"] = str(cache)
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--logs-dir",
        logs,
        "--",
        "sh",
        "-c",
        f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select current_database()"',
    )
    return result, (conductor.cwd / logs / "conductor.log").read_text()


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the entry run_db needs, built once by a real run."""
    import shutil
    import uuid

    from support import Conductor, write_config

    folder = tmp_path_factory.mktemp("built-cache")
    write_config(
        folder / "conductor.toml",
        {"db": {"kind": "postgres", "database": "cached"}},
        logs_dir="logs",
    )
    builder = Conductor(folder, f"test-{uuid.uuid4().hex}")
    builder.env["XDG_CACHE_HOME"] = str(folder / "cache")
    result = builder.run("run", "--config", "conductor.toml", "--", "true")
    assert result.code == 0, result.text
    assert not builder.mine()
    shutil.rmtree(folder / "logs")
    for spare in (folder / "cache").rglob(template_cache.SPARE):  # each test makes its own
        shutil.rmtree(spare)
    return folder / "cache"


@pytest.fixture
def warm_cache(built_cache: Path, tmp_path: Path) -> Path:
    """This test's own copy of the built cache."""
    import shutil

    return Path(shutil.copytree(built_cache, tmp_path / "cache"))


def from_cache(log: str) -> bool:
    """The run's cluster came from the cache: copied, or the spare an earlier run left."""
    return "copied from the cache" in log or "taken from the spare copy" in log


def run_folder(log: str) -> Path:
    match = re.search(r"db: run folder (\S+)", log)
    assert match, log
    return Path(match.group(1))


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "conductor" / "postgres").iterdir())


@needs_postgres
def test_first_run_builds_the_cache_and_the_next_copies_it(conductor, config, tmp_path):
    cache = tmp_path / "cache"
    first, log = run_db(conductor, config, cache)
    assert first.code == 0, first.text
    assert first.out.strip() == "cached"
    assert "initdb took" in log
    assert "cached the cluster in" in log
    [entry] = entries(cache)
    assert (entry / template_cache.MANIFEST).is_file()
    assert not run_folder(log).exists()  # the run's copy goes; the cache stays

    second, log = run_db(conductor, config, cache)
    assert second.code == 0, second.text
    assert second.out.strip() == "cached"
    assert from_cache(log)
    assert "initdb" not in log
    assert not run_folder(log).exists()
    assert entries(cache) == [entry]


@needs_postgres
def test_a_warm_run_works_on_a_copy_not_on_the_cache(conductor, config, warm_cache):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    cache = warm_cache
    assert run_db(conductor, config, cache)[0].code == 0
    [entry] = entries(cache)
    manifest = (entry / template_cache.MANIFEST).read_text()
    write = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "create table written_by_a_run (x int)"'
    result = conductor.run("run", "--config", "conductor.toml", "--", "sh", "-c", write)
    assert result.code == 0, result.text
    again, _ = run_db(conductor, config, cache)
    assert again.code == 0, again.text
    assert (entry / template_cache.MANIFEST).read_text() == manifest
    check = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select to_regclass(\'written_by_a_run\')"'
    result = conductor.run("run", "--config", "conductor.toml", "--", "sh", "-c", check)
    assert result.code == 0, result.text
    assert result.out.strip() == ""  # NULL: the table lived only in that run's copy


@needs_postgres
@pytest.mark.parametrize(
    "damage", ["truncated file", "no PG_VERSION", "half-written folder", "fifo"]
)
def test_a_corrupt_cache_never_breaks_a_run_and_is_rebuilt(conductor, config, warm_cache, damage):
    cache = warm_cache
    [entry] = entries(cache)
    data = entry / template_cache.DATA
    if damage == "truncated file":
        biggest = max((p for p in data.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        os.truncate(biggest, biggest.stat().st_size // 2)
    elif damage == "no PG_VERSION":
        (data / "PG_VERSION").unlink()
    elif damage == "fifo":  # opening it for reading would wait for a writer forever
        (data / "postgresql.conf").unlink()
        os.mkfifo(data / "postgresql.conf")
    else:
        (entry / template_cache.MANIFEST).unlink()
    result, log = run_db(conductor, config, cache)
    assert result.code == 0, result.text
    assert result.out.strip() == "cached"
    assert "cannot be trusted" in log
    assert "initdb took" in log
    assert "cached the cluster in" in log
    [rebuilt] = entries(cache)
    assert (rebuilt / template_cache.MANIFEST).is_file()
    warm, log = run_db(conductor, config, cache)
    assert warm.code == 0, warm.text
    assert from_cache(log)


@needs_postgres
def test_two_runs_building_the_cache_at_once_both_succeed(conductor, config, tmp_path):
    psql = find_bindir() / "psql"  # type: ignore[operator]
    cache = tmp_path / "cache"
    config({"db": {"kind": "postgres", "database": "cached"}})
    conductor.env["XDG_CACHE_HOME"] = str(cache)
    query = f'"{psql}" --no-psqlrc -At -d "$DB_URL" -c "select current_database()"'
    runs = [
        conductor.start(
            "run", "--config", "conductor.toml", "--logs-dir", f"logs{i}", "--", "sh", "-c", query
        )
        for i in (1, 2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in runs]
    for proc, (out, err) in zip(runs, outputs, strict=True):
        assert proc.returncode == 0, out + err
        assert out.strip() == "cached"
    logs = [(tmp_path / f"logs{i}" / "conductor.log").read_text() for i in (1, 2)]
    assert all("initdb took" in log for log in logs), "both runs should have built it"
    assert sum("cached the cluster in" in log for log in logs) == 1
    assert sum("another run cached the same cluster" in log for log in logs) == 1
    [entry] = entries(cache)  # no .build- folder is left either
    assert (entry / template_cache.MANIFEST).is_file()


@needs_postgres
def test_a_cache_that_cannot_be_written_only_costs_time(conductor, config, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result, log = run_db(conductor, config, blocker)
    assert result.code == 0, result.text
    assert result.out.strip() == "cached"
    assert "could not cache the cluster" in log


def test_a_spare_is_taken_once_and_only_when_complete(tmp_path):
    entry = stored(tmp_path)
    me = os.geteuid()
    assert template_cache.make_spare(entry, None, threading.Event())
    assert not template_cache.make_spare(entry, None, threading.Event())  # one is there
    assert template_cache.claim_spare(entry, tmp_path / "run1", me)
    assert (tmp_path / "run1" / "base/1/1255").read_bytes() == (
        tmp_path / "made" / "base/1/1255"
    ).read_bytes()
    assert not template_cache.claim_spare(entry, tmp_path / "run2", me)  # taken
    assert not (entry / template_cache.SPARE).exists()  # no shell left behind
    assert template_cache.make_spare(entry, None, threading.Event())
    (entry / template_cache.SPARE / template_cache.SPARE_MARKER).unlink()  # as if never finished
    assert not template_cache.claim_spare(entry, tmp_path / "run3", me)
    assert not (tmp_path / "run3").exists()
    assert not (entry / template_cache.SPARE).exists()  # dropped, so a new one can be made
    assert template_cache.make_spare(entry, None, threading.Event())
    assert not template_cache.claim_spare(entry, tmp_path / "run4", me + 1)  # not its owner's
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [template_cache.DATA, template_cache.MANIFEST]
    )


def test_a_cancelled_spare_leaves_nothing(tmp_path):
    entry = stored(tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(template_cache.Cancelled):
        template_cache.make_spare(entry, None, cancel)
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [template_cache.DATA, template_cache.MANIFEST]
    )


@needs_postgres
def test_a_run_leaves_a_spare_and_the_next_run_takes_it(conductor, config, warm_cache):
    [entry] = entries(warm_cache)
    marker = entry / template_cache.SPARE / template_cache.SPARE_MARKER
    config({"db": {"kind": "postgres", "database": "cached"}})
    conductor.env["XDG_CACHE_HOME"] = str(warm_cache)
    # COMMAND waits (60 s at most) for the spare this run makes once db is ready.
    wait = f'for i in $(seq 1200); do [ -e "{marker}" ] && exit 0; sleep 0.05; done; exit 1'
    first = conductor.run("run", "--config", "conductor.toml", "--", "sh", "-c", wait)
    assert first.code == 0, first.text
    log = (conductor.cwd / "logs" / "conductor.log").read_text()
    assert "made a spare copy for the next run" in log
    second, log = run_db(conductor, config, warm_cache)
    assert second.code == 0, second.text
    assert second.out.strip() == "cached"
    assert "taken from the spare copy" in log
    assert not run_folder(log).exists()


def plant(path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a FIFO, a Unix socket or a character device (/dev/null's) at `path`."""
    import socket
    import stat

    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":  # bound by its relative name: tmp_path may pass 107 bytes
        monkeypatch.chdir(path.parent)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device needs root (CAP_MKNOD)")


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
@pytest.mark.parametrize("where", ["entry", "fresh cluster"])
def test_a_fifo_is_doubted_without_being_opened(tmp_path, monkeypatch, where, kind):
    """Opening a FIFO for reading blocks until a writer comes: a FIFO planted in an entry
    (or in the cluster being stored) hung the run, deaf to SIGINT and SIGTERM. A socket
    or a device is no file of a cluster either."""
    if where == "entry":
        entry = stored(tmp_path)
        odd = entry / template_cache.DATA / "postgresql.conf"
        plant(odd, kind, monkeypatch)

        def act() -> None:
            template_cache.copy_out(entry, tmp_path / "copy", None, threading.Event())
    else:
        made = fake_cluster(tmp_path / "made")
        odd = made / "postgresql.conf"
        plant(odd, kind, monkeypatch)

        def act() -> None:
            template_cache.store(made, tmp_path / "entries", "k1", threading.Event())

    outcome: list[BaseException | None] = []

    def record() -> None:
        try:
            act()
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=record, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # release the blocked open, so the thread ends
        if kind == "fifo":
            os.close(os.open(odd, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=10)
        pytest.fail(f"opening the {kind} blocked")
    assert isinstance(outcome[0], template_cache.CacheDoubt), outcome
    assert "not a regular file" in str(outcome[0])


def test_a_copy_stops_inside_a_big_file_when_cancelled(tmp_path):
    """SIGINT/SIGTERM act at once during the copy: the copy looks at `cancel` between
    steps of a file, not only between files (a 1.5 GB file held a SIGTERM for 6 s)."""
    import time

    entry = stored(tmp_path)
    big = entry / template_cache.DATA / "base/1/big"
    size = 1 << 30  # sparse: nothing to write here, but a whole copy writes 1 GiB
    with open(big, "wb") as out:
        out.truncate(size)
    manifest = json.loads((entry / template_cache.MANIFEST).read_text())
    manifest["files"].append(["base/1/big", size])
    (entry / template_cache.MANIFEST).write_text(json.dumps(manifest))
    cancel = threading.Event()
    outcome: list[BaseException | None] = []

    def copy() -> None:
        try:
            template_cache.copy_out(entry, tmp_path / "copy", None, cancel)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    copied = tmp_path / "copy/base/1/big"
    deadline = time.monotonic() + 30
    while not (copied.exists() and copied.stat().st_size > 0) and worker.is_alive():
        assert time.monotonic() < deadline, "the copy never reached the big file"
        time.sleep(0.001)
    cancel.set()
    asked = time.monotonic()
    worker.join(timeout=60)
    took = time.monotonic() - asked
    assert isinstance(outcome[0], template_cache.Cancelled), outcome
    assert copied.stat().st_size < size
    assert took < 2.0, f"the copy went on for {took:.1f}s after it was cancelled"


SPARE_DAMAGE = ["missing PG_VERSION", "emptied file", "fifo", "extra fifo", "missing folder"]


def damage_spare(spare_data: Path, damage: str) -> None:
    """Damage that the spare's marker cannot show: only its entry's manifest can."""
    if damage == "missing PG_VERSION":
        (spare_data / "PG_VERSION").unlink()
    elif damage == "emptied file":  # global/pg_filenode.map; the fake's biggest file
        victim = spare_data / "global" / "pg_filenode.map"
        if not victim.exists():
            victim = max(
                (p for p in spare_data.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
            )
        os.truncate(victim, 0)
    elif damage == "fifo":
        (spare_data / "postgresql.conf").unlink()
        os.mkfifo(spare_data / "postgresql.conf")
    elif damage == "extra fifo":
        os.mkfifo(spare_data / "postgresql.auto.conf.fifo")
    else:
        empty = next(
            p for p in sorted(spare_data.rglob("*")) if p.is_dir() and not any(p.iterdir())
        )
        empty.rmdir()


@pytest.mark.parametrize("damage", SPARE_DAMAGE)
def test_a_spare_is_checked_against_its_manifest(tmp_path, damage):
    entry = stored(tmp_path)
    assert template_cache.make_spare(entry, None, threading.Event())
    damage_spare(entry / template_cache.SPARE / template_cache.DATA, damage)
    with pytest.raises(template_cache.CacheDoubt):
        template_cache.claim_spare(entry, tmp_path / "run", os.geteuid())
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [template_cache.DATA, template_cache.MANIFEST]
    )
    template_cache.copy_out(entry, tmp_path / "run", None, threading.Event())  # still good


@needs_postgres
@pytest.mark.parametrize("damage", ["missing PG_VERSION", "emptied file"])
def test_a_damaged_spare_is_not_used(conductor, config, warm_cache, damage):
    [entry] = entries(warm_cache)
    assert template_cache.make_spare(entry, clusters._owner(), threading.Event())
    damage_spare(entry / template_cache.SPARE / template_cache.DATA, damage)
    result, log = run_db(conductor, config, warm_cache)
    assert result.code == 0, result.text
    assert result.out.strip() == "cached"
    assert "the spare copy" in log, log
    assert "does not match its manifest" in log, log
    assert "copied from the cache" in log


def zero_file(path: Path) -> None:
    """Overwrite a file with zeros of its own size: damage no size check can see."""
    path.write_bytes(bytes(path.stat().st_size))


@needs_postgres
@pytest.mark.parametrize(
    "damage", ["unreadable cache", "zeroed map in the entry", "zeroed map in the spare"]
)
def test_a_cached_cluster_that_fails_before_ready_falls_back_to_initdb(
    conductor, config, warm_cache, damage
):
    """Damage of the same size passes every check of the files; the server fails on
    it (or, as root, on a `chmod -R 000` cache it runs as `postgres`). That run falls
    back once to initdb and replaces the entry, and the next one starts from it."""
    [entry] = entries(warm_cache)
    if damage == "zeroed map in the entry":
        zero_file(entry / template_cache.DATA / "global" / "pg_filenode.map")
    else:
        assert template_cache.make_spare(entry, clusters._owner(), threading.Event())
        if damage == "zeroed map in the spare":
            spare = entry / template_cache.SPARE / template_cache.DATA
            zero_file(spare / "global" / "pg_filenode.map")
        else:
            if os.geteuid() != 0:
                pytest.skip("as another user, an unreadable cache is not read at all")
            for top, dirs, files in os.walk(warm_cache):
                for name in dirs + files:
                    os.chmod(os.path.join(top, name), 0)
    before = (entry / template_cache.MANIFEST).stat().st_ino
    result, log = run_db(conductor, config, warm_cache)
    assert result.code == 0, result.text
    assert result.out.strip() == "cached"
    said = "falling back, once, to a fresh initdb, which replaces the cache entry"
    assert said in log
    assert said in (conductor.cwd / "logs" / "db.log").read_text()
    assert "initdb took" in log
    assert "cached the cluster in" in log
    [rebuilt] = entries(warm_cache)
    assert (rebuilt / template_cache.MANIFEST).stat().st_ino != before
    again, log = run_db(conductor, config, warm_cache)
    assert again.code == 0, again.text
    assert again.out.strip() == "cached"
    assert from_cache(log)
    assert "falling back" not in log


def test_the_cache_keeps_its_bound_dropping_the_least_recently_used(tmp_path):
    entries = tmp_path / "entries"
    made = fake_cluster(tmp_path / "made")
    for i in range(1, 6):
        assert template_cache.store(made, entries, f"k{i}", threading.Event(), limit=5)
        os.utime(entries / f"k{i}", (1000.0 * i, 1000.0 * i))  # k1 the least recent
    (entries / "mine").mkdir()  # not conductor's: neither counted nor dropped
    (tmp_path / "outside" / "data").mkdir(parents=True)
    (tmp_path / "outside" / template_cache.MANIFEST).write_text('{"key": "linked"}')
    (entries / "linked").symlink_to(tmp_path / "outside")
    template_cache.copy_out(entries / "k1", tmp_path / "copy", None, threading.Event())
    assert template_cache.store(made, entries, "k6", threading.Event(), limit=5)
    assert sorted(p.name for p in entries.iterdir()) == [
        "k1",
        "k3",
        "k4",
        "k5",
        "k6",
        "linked",
        "mine",
    ]  # k2 went: k1 was used since
    assert template_cache.store(made, entries, "k7", threading.Event(), limit=2)
    assert sorted(p.name for p in entries.iterdir()) == ["k6", "k7", "linked", "mine"]
    assert (tmp_path / "outside" / template_cache.MANIFEST).exists()


def test_the_bound_comes_from_the_environment():
    assert template_cache.bound({}) == template_cache.ENTRIES == 5
    assert template_cache.bound({"CONDUCTOR_PG_CACHE_ENTRIES": "12"}) == 12
    for bad in ("0", "-1", "five", "2.5", "\u0663"):
        with pytest.raises(ValueError, match="CONDUCTOR_PG_CACHE_ENTRIES=") as info:
            template_cache.bound({"CONDUCTOR_PG_CACHE_ENTRIES": bad})
        assert "\n" not in str(info.value)


@needs_postgres
def test_a_bad_cache_bound_is_one_line_and_exit_2(conductor, config):
    config({"db": {"kind": "postgres"}})
    conductor.env["CONDUCTOR_PG_CACHE_ENTRIES"] = "none"
    result = conductor.run("check", "--config", "conductor.toml")
    assert result.code == 2, result.text
    [line] = result.err.strip().splitlines()
    assert "service 'db'" in line
    assert "CONDUCTOR_PG_CACHE_ENTRIES='none' is not a whole number" in line


@needs_postgres
def test_a_run_keeps_the_cache_within_its_bound(conductor, config, tmp_path):
    cache = tmp_path / "cache"
    conductor.env["XDG_CACHE_HOME"] = str(cache)
    conductor.env["CONDUCTOR_PG_CACHE_ENTRIES"] = "1"
    for database in ("first", "second"):
        config({"db": {"kind": "postgres", "database": database}})
        result = conductor.run("run", "--config", "conductor.toml", "--", "true")
        assert result.code == 0, result.text
    [entry] = entries(cache)
    manifest = json.loads((entry / template_cache.MANIFEST).read_text())
    assert manifest["key"] == template_cache.key(
        find_bindir(),  # type: ignore[arg-type]
        user="postgres",
        database="second",
        password=None,
    )


def fill_cache(cache: Path) -> Path:
    """A cache folder with two entries of conductor's and what conductor did not make."""
    import time

    entries = cache / "conductor" / "postgres"
    made = fake_cluster(cache.parent / "made")
    for name in ("k1", "k2"):
        assert template_cache.store(made, entries, name, threading.Event())
    (entries / "mine").mkdir()
    (entries / "mine" / "keep.txt").write_text("mine")
    (entries / "other-key").mkdir()  # a manifest that names another folder
    (entries / "other-key" / template_cache.MANIFEST).write_text('{"key": "k1"}')
    outside = cache.parent / "outside"
    outside.mkdir()
    (outside / template_cache.MANIFEST).write_text('{"key": "linked"}')
    (entries / "linked").symlink_to(outside)
    (entries / ".build-live").mkdir()  # a live run's entry being built
    (entries / ".build-dead").mkdir()  # a killed run's, an hour old
    old = time.time() - template_cache.STALE_AFTER - 60
    os.utime(entries / ".build-dead", (old, old))
    return entries


def test_clean_cache_empties_only_what_conductor_made(conductor, tmp_path):
    cache = tmp_path / "cache"
    entries = fill_cache(cache)
    conductor.env["XDG_CACHE_HOME"] = str(cache)
    result = conductor.run("clean", "--cache")  # no configuration needed
    assert result.code == 0, result.text
    assert result.out.splitlines() == [
        f"removed cache entry {entries / 'k1'}",
        f"removed cache entry {entries / 'k2'}",
    ]
    assert sorted(p.name for p in entries.iterdir()) == [
        ".build-live",
        "linked",
        "mine",
        "other-key",
    ]
    assert (entries / "mine" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "outside" / template_cache.MANIFEST).exists()
    [line] = result.err.strip().splitlines()
    assert line.startswith("conductor: warning: left alone in the cache: ")
    for name in (".build-live", "linked", "mine", "other-key"):
        assert str(entries / name) in line
    again = conductor.run("clean", "--cache")
    assert again.code == 0, again.text
    assert again.out.strip() == f"no cache entry to remove in {entries}"


def test_clean_cache_never_goes_through_a_link(conductor, tmp_path):
    real = tmp_path / "real"
    fill_cache(real)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "conductor").symlink_to(real / "conductor")
    conductor.env["XDG_CACHE_HOME"] = str(cache)
    result = conductor.run("clean", "--cache")
    assert result.code == 0, result.text
    assert (real / "conductor" / "postgres" / "k1" / template_cache.MANIFEST).exists()
    [line] = result.err.strip().splitlines()
    assert f"{cache / 'conductor'} is a link: conductor did not make it" in line
    assert "Traceback" not in result.text


def bind_mount(victim: Path, at: Path) -> None:
    """Mount `victim` at `at` (made here), or skip where bind mounts are not available."""
    import subprocess

    at.mkdir(parents=True)
    if subprocess.run(["mount", "--bind", str(victim), str(at)], capture_output=True).returncode:
        pytest.skip("bind mounts are not available here (needs root)")


@pytest.mark.parametrize("folder", [".trash-k1-1-2", ".build-dead"])
def test_clean_cache_never_deletes_through_a_mount(conductor, tmp_path, folder):
    """A folder mounted in a dead run's trash or staging folder is another filesystem's:
    clean leaves it, says so, and deletes nothing under it (an entry's own are, already)."""
    import subprocess
    import time

    cache = tmp_path / "cache"
    entries = fill_cache(cache)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("not conductor's")
    inside = entries / folder / "m"
    bind_mount(victim, inside)
    try:
        old = time.time() - template_cache.STALE_AFTER - 60
        os.utime(entries / folder, (old, old))
        conductor.env["XDG_CACHE_HOME"] = str(cache)
        result = conductor.run("clean", "--cache")
        assert (victim / "precious").read_text() == "not conductor's"
    finally:
        subprocess.run(["umount", str(inside)], check=True)
    assert f"it holds the mount point {inside}" in result.err, result.text
    assert "Traceback" not in result.text


@pytest.mark.parametrize("folder", [".build-dead", "spare"])
def test_a_run_never_deletes_through_a_mount_in_the_cache(tmp_path, folder):
    """What a run drops on its own (a dead run's staging folder when it stores an entry,
    an unusable spare when it looks for one) is left whole when something is mounted in
    it."""
    import subprocess
    import time

    entry = stored(tmp_path)
    where = (entry.parent if folder.startswith(".") else entry) / folder
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("not conductor's")
    bind_mount(victim, where / "m")
    mounted = where / "m"
    try:
        old = time.time() - template_cache.STALE_AFTER - 60
        os.utime(where, (old, old))
        if folder == "spare":  # no marker: not usable, so dropped
            assert not template_cache.claim_spare(entry, tmp_path / "taken", os.geteuid())
            [mounted] = [m for m in entry.glob(".trash-spare-*/m")] or [mounted]
        else:
            assert template_cache.store(tmp_path / "made", entry.parent, "k2", threading.Event())
        assert (victim / "precious").read_text() == "not conductor's"
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
