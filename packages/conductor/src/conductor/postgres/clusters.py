"""`kind = "postgres"`: a throwaway PostgreSQL cluster that lives exactly as long as the run.

Each run gets its own folder in the temp dir (`conductor-pg-*`, made and removed
through process/ownership.py, so only ever with conductor's marker file): the cluster in `data/`,
copied from the template cache (template_cache.py) or made by initdb when there is no
trustworthy entry, and the server's Unix socket. The server runs without fsync and
listens only on the configured host; the folder is removed at teardown. As root the
server binaries run as the `postgres` user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from conductor.errors import ServiceFailed
from conductor.files import masking
from conductor.files.logs import logger, tail
from conductor.postgres import handshake, template_cache
from conductor.process import ownership, portable, reaper

T = TypeVar("T")

INIT_TAIL_LINES = 30  # of the service's log, read back for psql's error when init fails


@dataclass(frozen=True)
class Setup:
    """What the plan settled for one cluster, templates filled."""

    bindir: Path
    folder: Path  # the run's folder: conductor's marker, data/, and the Unix socket
    user: str
    password: str | None
    database: str
    init: tuple[tuple[str, Path], ...] = ()  # (as written, absolute path)
    settings: tuple[tuple[str, str], ...] = ()
    cache_entries: int = template_cache.ENTRIES  # the template cache's bound


def plan_folder() -> Path:
    """A fresh name for a run's folder in the temp dir. Chosen when the plan is made,
    so that {services.NAME.socket_dir} can be filled; created (exclusively) at start."""
    return ownership.plan_folder("pg")


# The longest Unix socket path the server accepts (sizeof(sun_path) - 1 on Linux), and
# the longest name it puts in the folder (port 65535), checked before anything starts.
SOCKET_PATH_MAX = 107
_SOCKET_NAME_MAX = len("/.s.PGSQL.65535")


def socket_path_problem(folder: Path) -> str | None:
    """Why the server could not make its socket in `folder`, or None. The server only
    says so in its log after initdb; a long TMPDIR is the usual cause, so name it."""
    length = len(os.fsencode(folder)) + _SOCKET_NAME_MAX
    if length <= SOCKET_PATH_MAX:
        return None
    return (
        f"its Unix socket path in {folder} would be {length} bytes, over the "
        f"{SOCKET_PATH_MAX} the OS allows; shorten TMPDIR (e.g. TMPDIR=/tmp)"
    )


def setting_value(value: str | float | bool) -> str:
    """A settings value as the server reads it after -c (true: on)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def run_as() -> str | None:
    """The user to run the server as: `postgres` when we are root, else ourselves."""
    return "postgres" if not portable.WINDOWS and os.geteuid() == 0 else None


def _owner() -> tuple[int, int] | None:
    """(uid, gid) that the run's files must belong to, when that is not us."""
    user = run_as()
    if user is None:
        return None
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted: user and database names are the user's to choose."""
    return '"' + name.replace('"', '""') + '"'


class Cluster:
    """One throwaway cluster: its run folder, its server command, its database."""

    def __init__(
        self, service: str, setup: Setup, host: str, port: int, mark: ownership.Mark
    ) -> None:
        self.service = service
        self.setup = setup
        self.bindir = setup.bindir
        self.user = setup.user
        self.password = setup.password
        self.database = setup.database
        self.host = host
        self.port = port
        self.mark = mark
        self.folder: Path | None = None
        self.entry: Path | None = None  # its cache entry
        self.from_cache = False  # data/ is the entry's copy or its spare, not initdb's
        self._cancel = threading.Event()
        self._busy = threading.Lock()
        self._spare: asyncio.Future[None] | None = None

    @property
    def datadir(self) -> Path:
        assert self.folder is not None, "make_folder() first"
        return self.folder / "data"

    def make_folder(self) -> Path:
        """The run's folder (the socket's too), owned by the user the server runs as,
        with the marker (ownership.make_folder) that lets teardown prove conductor made it."""
        try:
            ownership.make_folder(self.mark, self.setup.folder)
        except OSError as exc:
            raise ServiceFailed(
                self.service, f"could not create its folder {self.setup.folder}: {exc.strerror}"
            ) from None
        self.folder = self.setup.folder
        owner = _owner()
        if owner is not None:
            os.chown(self.folder, *owner)
        logger.info("%s: run folder %s", self.service, self.folder)
        return self.folder

    async def init(self, log_fd: int, env: dict[str, str]) -> None:
        """Fill data/: the spare an earlier run left, else a copy of the cache entry when
        it is trustworthy, else initdb plus the database, stored in the cache."""
        began = time.monotonic()
        entries = template_cache.root()
        try:
            name = template_cache.key(
                self.bindir, user=self.user, database=self.database, password=self.password
            )
        except OSError:
            entries = None
            name = ""
        if entries is not None:
            self.entry = entries / name
            if await self._from_spare(self.entry):
                self.from_cache = True
                logger.info(
                    "%s: cluster taken from the spare copy in %s in %.3fs",
                    self.service,
                    self.entry,
                    time.monotonic() - began,
                )
                return
            if await self._from_cache(self.entry):
                self.from_cache = True
                logger.info(
                    "%s: cluster copied from the cache %s in %.3fs",
                    self.service,
                    self.entry,
                    time.monotonic() - began,
                )
                return
        await self._fresh(log_fd, env)

    async def _fresh(self, log_fd: int, env: dict[str, str]) -> None:
        """initdb plus the database, stored in the cache as its entry."""
        began = time.monotonic()
        await self._initdb(log_fd, env)
        await self._create_database(log_fd, env)
        logger.info("%s: initdb took %.3fs", self.service, time.monotonic() - began)
        if self.entry is not None:
            await self._store(self.entry.parent, self.entry.name)

    async def refill(self, log_fd: int, env: dict[str, str]) -> None:
        """The fallback, once, for a cluster from the cache whose server failed before it
        was ready (stopped by now): its entry is dropped (the spare with it), and data/
        is made anew by initdb and stored as the entry's replacement."""
        self.from_cache = False
        if self.entry is not None:
            await asyncio.to_thread(template_cache.discard, self.entry)
        await asyncio.to_thread(shutil.rmtree, self.datadir, True)
        await self._fresh(log_fd, env)

    async def prove(self) -> bool:
        """Wait until the service's database opens over the run's Unix socket (ServiceFailed
        when the server refuses it); False when the socket is not there to prove
        through (a `unix_socket_directories` setting moved it)."""
        assert self.folder is not None
        path = handshake.socket_path(self.socket_dir, self.port)
        try:
            return await handshake.prove(path, self.user, self.database)
        except handshake.Refused as exc:
            said = masking.mask(exc.message)  # the server's words are data
            raise ServiceFailed(
                self.service,
                f"refused a connection to its database before it was ready: {said} "
                f"(SQLSTATE {exc.code})",
            ) from None

    async def _from_spare(self, entry: Path) -> bool:
        """The spare an earlier run left, taken with one rename and checked against the
        entry's manifest; a damaged one is dropped and said, and the entry is copied."""
        uid = (_owner() or (os.geteuid(),))[0]
        try:
            return await asyncio.to_thread(template_cache.claim_spare, entry, self.datadir, uid)
        except template_cache.CacheDoubt as exc:
            logger.warning(
                "%s: the spare copy in %s does not match its manifest (%s); it is dropped, "
                "and this run copies the entry",
                self.service,
                entry,
                exc,
            )
            return False

    async def _from_cache(self, entry: Path) -> bool:
        if not entry.is_dir():
            return False
        try:
            # An entry is renamed into place whole, so one without its manifest is
            # damaged, never still being built (that happens under a .build- name).
            if not (entry / template_cache.MANIFEST).is_file():
                raise template_cache.CacheDoubt("it has no manifest")
            await self._in_thread(template_cache.copy_out, entry, self.datadir, _owner())
            return True
        except template_cache.CacheDoubt as exc:
            logger.warning(
                "%s: the cached cluster %s cannot be trusted (%s); it is dropped, and this "
                "run makes a fresh one",
                self.service,
                entry,
                exc,
            )
            await asyncio.to_thread(template_cache.discard, entry)
        except OSError as exc:
            logger.warning(
                "%s: could not copy the cached cluster %s (%s); running initdb",
                self.service,
                entry,
                exc,
            )
        await asyncio.to_thread(shutil.rmtree, self.datadir, True)
        return False

    async def _store(self, entries: Path, name: str) -> None:
        began = time.monotonic()
        try:
            stored = await self._in_thread(self._store_entry, self.datadir, entries, name)
        except (OSError, template_cache.CacheDoubt) as exc:
            logger.warning("%s: could not cache the cluster in %s: %s", self.service, entries, exc)
            return
        logger.info(
            "%s: %s in %.3fs",
            self.service,
            f"cached the cluster in {entries / name}"
            if stored
            else f"another run cached the same cluster in {entries / name} first",
            time.monotonic() - began,
        )

    def _store_entry(self, data: Path, entries: Path, name: str, cancel: threading.Event) -> bool:
        return template_cache.store(data, entries, name, cancel, limit=self.setup.cache_entries)

    async def _in_thread(self, work: Callable[..., T], *args: object) -> T:
        """Copy in a worker thread, so the loop keeps serving the other services; the
        copy stops at its next file once remove() asks, and remove() waits for it."""

        def guarded() -> T:
            with self._busy:
                if self._cancel.is_set():
                    raise template_cache.Cancelled
                return work(*args, self._cancel)

        return await asyncio.to_thread(guarded)

    async def _initdb(self, log_fd: int, env: dict[str, str]) -> None:
        auth = ["-A", "trust"]
        pwfile = self.datadir.parent / "initdb.pw"
        if self.password is not None:
            # The password file sits outside the data folder (initdb wants it empty) and
            # goes away as soon as initdb has read it.
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.password + "\n")
            owner = _owner()
            if owner is not None:
                os.chown(pwfile, *owner)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            await self._step(
                log_fd,
                env,
                "initdb",
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.user,
                    *auth,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    # 1 MB WAL segments instead of 16: a third less to copy per run.
                    "--wal-segsize=1",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)

    async def _create_database(self, log_fd: int, env: dict[str, str]) -> None:
        """CREATE DATABASE before the server ever starts (single-user mode), so the
        cached cluster already has it and a warm run starts no client at all."""
        if self.database == "postgres":
            return
        sql = f"CREATE DATABASE {quote_ident(self.database)} OWNER {quote_ident(self.user)}"
        version = (self.datadir / "PG_VERSION").read_text(encoding="ascii").strip()
        if version.isdigit() and int(version) >= 15:
            sql += " STRATEGY FILE_COPY"  # no copy of the template through the WAL
        await self._step(
            log_fd,
            env,
            "CREATE DATABASE",
            [
                str(self.bindir / "postgres"),
                "--single",
                "-D",
                str(self.datadir),
                "-c",
                "fsync=off",
                "-c",
                "exit_on_error=on",
                "postgres",
            ],
            stdin=(sql + "\n").encode(),
        )

    def command(self) -> list[str]:
        """The server: our defaults for a throwaway cluster, then `settings`, which win."""
        settings = [arg for name, value in self.setup.settings for arg in ("-c", f"{name}={value}")]
        return [
            str(self.bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            *settings,
        ]

    @property
    def socket_dir(self) -> Path:
        assert self.folder is not None, "make_folder() first"
        return self.folder

    async def _step(
        self,
        log_fd: int,
        env: dict[str, str],
        name: str,
        argv: list[str],
        stdin: bytes | None = None,
    ) -> None:
        assert self.folder is not None
        user = run_as()
        proc = await reaper.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=log_fd,
            stderr=log_fd,
            cwd=self.folder,
            env=env,
            **(portable.run_as_kwargs(user) if user else {}),
        )
        try:
            await proc.communicate(stdin)
            code = proc.returncode
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if code != 0:
            raise ServiceFailed(self.service, f"could not run {name} (status {code}); see its log")

    async def finish_start(self, log_fd: int, env: dict[str, str], log_path: Path) -> None:
        """Once the server is up: the init files (psql writing to the service's log,
        `log_fd`, which is `log_path`), then (in the background, for the next run) a
        spare copy of the cache entry."""
        await self._run_init(log_fd, env, log_path)
        if self.entry is not None and self.folder is not None and self._spare is None:
            try:
                same_disk = os.stat(self.entry).st_dev == os.stat(self.folder.parent).st_dev
            except OSError:
                return  # no entry (the cache could not be written)
            if same_disk:  # else the next run could not take it with a rename
                self._spare = asyncio.ensure_future(self._make_spare(self.entry))

    async def _make_spare(self, entry: Path) -> None:
        began = time.monotonic()
        try:
            made = await self._in_thread(template_cache.make_spare, entry, _owner())
        except template_cache.Cancelled:
            logger.info("%s: the run ended before the spare copy was done", self.service)
            return
        except (OSError, template_cache.CacheDoubt) as exc:
            logger.warning("%s: could not make a spare copy in %s: %s", self.service, entry, exc)
            return
        if made:
            logger.info(
                "%s: made a spare copy for the next run in %.3fs",
                self.service,
                time.monotonic() - began,
            )

    async def _run_init(self, log_fd: int, env: dict[str, str], log_path: Path) -> None:
        """The `init` SQL files, in order, as `user` on `database`, over the Unix socket,
        in one psql session that stops at the first error. A failure names the file
        and quotes the server's error line.

        psql writes straight into the service's log, as the server does: what it
        prints (200 MB of NOTICEs, say) is never held in conductor's memory, and init
        is over when psql exits, whoever else holds its output open (a `\\!` child).
        Its error is read back from the log's end."""
        if not self.setup.init:
            return
        began = time.monotonic()
        files = [arg for _, path in self.setup.init for arg in ("-f", str(path))]
        argv = [
            str(self.bindir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--host={self.socket_dir}",
            f"--port={self.port}",
            f"--username={self.user}",
            f"--dbname={self.database}",
            *files,
        ]
        # As ourselves (the files are ours to read), with no PG* variable of ours
        # (PGHOSTADDR, PGOPTIONS, ...) steering the client elsewhere.
        proc = await reaper.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env={k: v for k, v in env.items() if not k.startswith("PG")},
        )
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if code != 0:
            said = tail(log_path, INIT_TAIL_LINES).lines  # masked: psql's words are data
            raise ServiceFailed(self.service, self._init_failure(said, code))
        logger.info(
            "%s: ran %d init file(s) in %.3fs",
            self.service,
            len(self.setup.init),
            time.monotonic() - began,
        )

    def _init_failure(self, said: list[str], code: int) -> str:
        """`init file 'db/schema.sql' failed: ERROR: ...`, from psql's
        `psql:/abs/db/schema.sql:3: ERROR:  ...` (the file as the config names it). Only
        psql's lines count: the server logs the same error, in its own words, before."""
        lines = [line for line in said if line.startswith("psql:")]
        error = next((ln for ln in lines if "ERROR:" in ln or "FATAL:" in ln), None)
        error = error or (lines[-1] if lines else None)
        if error is None:
            return f"an init file failed: psql exited with status {code}; see its log"
        for written, path in self.setup.init:
            prefix = f"psql:{path}:"
            if error.startswith(prefix):
                where, _, message = error[len(prefix) :].partition(": ")
                return f"init file '{written}' failed at line {where}: {message.strip()}"
        return f"an init file failed: {error.strip()}"

    def _wait_for_copy(self) -> None:
        with self._busy:
            pass

    async def remove(self) -> None:
        """Stop any copy under way, then delete the run's folder (never the cache). Each
        is a wait of teardown after the server stopped: conductor.log names it."""
        self._cancel.set()
        began = time.monotonic()
        if self._spare is not None:
            await asyncio.gather(self._spare, return_exceptions=True)
        # The copy stops within one step (template_cache.STEP); waited for in a thread,
        # so the loop goes on stopping the other services meanwhile.
        await asyncio.to_thread(self._wait_for_copy)
        if self._spare is not None:
            logger.info(
                "%s: waited %.3fs for the spare copy to stop",
                self.service,
                time.monotonic() - began,
            )
        if self.folder is not None:
            began = time.monotonic()
            try:
                ownership.remove_folder(str(self.folder), self.mark)
            except ownership.NotOurs as exc:  # made by this run: should not happen, so say it
                logger.warning("%s: run folder left in place: %s", self.service, exc)
            else:
                logger.info(
                    "%s: removed its run folder %s in %.3fs",
                    self.service,
                    self.folder,
                    time.monotonic() - began,
                )
            self.folder = None
