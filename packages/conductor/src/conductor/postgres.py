"""`kind = "postgres"`: a throwaway PostgreSQL cluster that lives exactly as long as the run.

initdb into a temporary folder without fsync, a server that listens only on the
configured host, one database, and the folder removed at teardown. As root the server
binaries run as the `postgres` user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
from pathlib import Path

from conductor import compat, reaper
from conductor.errors import ServiceFailed

SERVER_BINARIES = ("initdb", "postgres", "createdb")
MISSING = (
    "PostgreSQL server binaries (initdb, postgres) were not found on PATH, through "
    "`pg_config --bindir`, or in /usr/lib/postgresql/*/bin; install them (Debian: "
    "apt-get install postgresql) or point the tests at an existing server with "
    "TEST_DATABASE_URL / DATABASE_URL"
)


@functools.cache
def find_bindir() -> Path | None:
    """The folder holding initdb, postgres and createdb, or None (looked up once: it may
    run pg_config, and every plan asks for it)."""
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in SERVER_BINARIES):
            return folder
    return None


def run_as() -> str | None:
    """The user to run the server as: `postgres` when we are root, else ourselves."""
    return "postgres" if not compat.WINDOWS and os.geteuid() == 0 else None


class Cluster:
    """One throwaway cluster: its data folder, its server command, its database."""

    def __init__(
        self,
        service: str,
        bindir: Path,
        host: str,
        port: int,
        database: str,
        password: str | None = None,
    ) -> None:
        self.service = service
        self.bindir = bindir
        self.host = host
        self.port = port
        self.database = database
        self.password = password
        self.datadir: Path | None = None

    def make_datadir(self) -> Path:
        """The cluster's folder, owned by the user the server runs as."""
        import tempfile  # here, not at the top: every conductor start would pay for it

        self.datadir = Path(tempfile.mkdtemp(prefix="conductor-pg-"))
        user = run_as()
        if user:
            shutil.chown(self.datadir, user, user)
        return self.datadir

    async def init(self, log_fd: int, env: dict[str, str]) -> None:
        assert self.datadir is not None, "make_datadir() first"
        auth = ["-A", "trust"]
        if self.password is not None:
            # The password file sits outside the data folder (initdb wants it empty) and
            # goes away as soon as initdb has read it.
            pwfile = self.datadir.parent / f"{self.datadir.name}.pw"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.password + "\n")
            user = run_as()
            if user:
                shutil.chown(pwfile, user, user)
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
                    "postgres",
                    *auth,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
        finally:
            if self.password is not None:
                pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        assert self.datadir is not None
        return [
            str(self.bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.datadir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    async def create_database(self, log_fd: int, env: dict[str, str]) -> None:
        if self.database == "postgres":
            return
        if self.password is not None:
            env = {**env, "PGPASSWORD": self.password}
        await self._step(
            log_fd,
            env,
            "createdb",
            [
                str(self.bindir / "createdb"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                self.database,
            ],
        )

    async def _step(self, log_fd: int, env: dict[str, str], name: str, argv: list[str]) -> None:
        assert self.datadir is not None
        user = run_as()
        proc = await reaper.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=self.datadir,
            env=env,
            **(compat.run_as_kwargs(user) if user else {}),
        )
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if code != 0:
            raise ServiceFailed(self.service, f"could not run {name} (status {code}); see its log")

    @property
    def folder(self) -> Path:
        assert self.datadir is not None, "make_datadir() first"
        return self.datadir

    def remove(self) -> None:
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = None
