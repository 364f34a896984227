"""Container images for conductor's tests, built on this machine from Debian's packages.

No registry is reachable here, and a test must not depend on one anyway: each image is
a Debian root filesystem that mmdebstrap makes from the packages the service needs,
turned into an image by `podman import`. The root filesystem's tar is cached under the
user's cache folder, keyed by what went into it (suite, packages, files), and the
image is built once per machine: it is kept in the engine's store, labelled with that
key, and rebuilt only when the recipe changes. Two test processes (xdist workers, two
sessions) that need one image at once build it once: the second waits on a lock file.

The engine runs under the tests' own containers.conf (CONTAINERS_CONF, set by
`use_test_engine()`), whose `pull_policy = "never"` keeps every run off registries.

The same images serve docker (issue 20 item 6: one code path for both engines). Where a
Docker daemon answers, they are imported into it from the same cached tar; where none
does, `docker_engine()` stands podman's Docker-compatible API in for one (`podman system
service` on a socket of its own), so the real docker client is exercised here too.

    python packages/conductor/tests/images.py redis|postgres   builds, prints the image
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

CONF = Path(__file__).with_name("containers.conf")
ENGINE = "podman"
INSTALL = "apt-get install podman runc mmdebstrap"
# The one wording of a skip for a missing program ("not installed: WHAT (HOW)"),
# which tests/unit/test_optional.py holds this file to.
NEEDS_ENGINE = f"not installed: {ENGINE} ({INSTALL})"
NEEDS_DOCKER = "not installed: docker (its client, with a daemon; or podman to stand in for one)"
DAEMON_SECONDS = 30.0  # podman's API service: start to its first answer
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
LABEL = "conductor.test-image"  # the recipe's key, on the image
BUILD_SECONDS = 900.0  # mmdebstrap's download and install, on a slow mirror day
INFO_SECONDS = 60.0
# Never in an image: documentation, manuals and translations (a smaller tar, built faster).
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")

# A PostgreSQL server as the registry's image runs one: a cluster made at the first
# start for user postgres with POSTGRES_PASSWORD (from the container's environment,
# never a command line), reachable from outside the container with that password, and
# the server exec'd as user postgres so the stop signal reaches it.
POSTGRES_START = """\
#!/bin/sh
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
data=/var/lib/postgresql/data
install -d -o postgres -g postgres -m 2775 /var/run/postgresql  # made at boot on a host
if [ ! -s "$data/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of user postgres)}"
    install -d -o postgres -g postgres -m 0700 "$data"
    pwfile=$(mktemp)
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    setpriv --reuid=postgres --regid=postgres --init-groups \\
        "$bin/initdb" --pgdata="$data" --username=postgres --pwfile="$pwfile" \\
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-sync
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \\
    "$bin/postgres" -D "$data" -c listen_addresses='*' "$@"
"""


@dataclass(frozen=True)
class Recipe:
    """One test image: its name and tag, the Debian packages in it, files added (path in
    the image to (text, mode)) and the `podman import --change` lines (CMD, ...)."""

    name: str
    version: int
    packages: tuple[str, ...]
    changes: tuple[str, ...]
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return f"localhost/{self.name}:{self.version}"

    @property
    def key(self) -> str:
        """What the root filesystem is made of; a change to any of it is another tar."""
        made_of = {
            "suite": SUITE,
            "variant": "minbase",
            "packages": sorted(self.packages),
            "files": {path: [text, mode] for path, (text, mode) in sorted(self.files.items())},
            "excludes": EXCLUDES,
        }
        return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


REDIS = Recipe(
    "conductor-test-redis",
    1,
    ("redis-server",),
    ('CMD ["redis-server", "--protected-mode", "no"]',),
)
POSTGRES = Recipe(
    "conductor-test-postgres",
    1,
    ("postgresql",),
    ('ENTRYPOINT ["/usr/local/bin/start-postgres"]', "CMD []"),
    {"/usr/local/bin/start-postgres": (POSTGRES_START, 0o755)},
)
RECIPES = {"redis": REDIS, "postgres": POSTGRES}


class Unavailable(Exception):
    """The engine cannot run the tests' containers here; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conductor-test-images"


def engine_env() -> dict[str, str]:
    """The environment the engine runs in for the tests: theirs, with their containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def use_test_engine() -> None:
    """Every engine this process starts (conductor's too) runs under the tests' conf."""
    os.environ["CONTAINERS_CONF"] = str(CONF)


@dataclass(frozen=True)
class TestEngine:
    """The engine the tests' images go into and their containers run on: its command and
    what its environment adds (DOCKER_HOST for a stood-in daemon)."""

    __test__ = False  # not a test class, whatever pytest's name rule says

    name: str = ENGINE
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def environ(self) -> dict[str, str]:
        return {**engine_env(), **self.env}

    def run(self, *args: str, timeout: float = INFO_SECONDS) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.name, *args],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )


PODMAN = TestEngine()


def problem(engine: TestEngine = PODMAN) -> str | None:
    """Why the tests' containers cannot run on `engine` here, or None when they can."""
    if shutil.which(engine.name) is None:
        return NEEDS_ENGINE if engine.name == ENGINE else NEEDS_DOCKER
    field_ = "{{.Host.OCIRuntime.Name}}" if engine.name == ENGINE else "{{.ServerVersion}}"
    try:
        info = engine.run("info", "--format", field_)
    except subprocess.TimeoutExpired:
        return f"{engine.name} info did not answer in {INFO_SECONDS:.0f} s"
    if info.returncode != 0:
        return f"{engine.name} cannot run containers here: {_last_line(info.stderr)}"
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def built_key(image: str, engine: TestEngine = PODMAN) -> str | None:
    """The recipe key the engine's copy of `image` was built from, or None if it has none."""
    found = engine.run(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', image
    )
    key = found.stdout.strip()
    return key if found.returncode == 0 and key and key != "<no value>" else None


def ensure(recipe: Recipe, engine: TestEngine = PODMAN) -> str:
    """`recipe`'s image in the engine's store (built if it is missing or stale); its name.

    Raises Unavailable when the engine or mmdebstrap cannot do it here."""
    reason = problem(engine)
    if reason is not None:
        raise Unavailable(reason)
    if built_key(recipe.image, engine) == recipe.key:
        return recipe.image
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f"{recipe.name}.lock", BUILD_SECONDS):
        if built_key(recipe.image, engine) != recipe.key:  # another process may have built it
            _import(recipe, _rootfs(recipe, folder), engine)
    return recipe.image


@contextlib.contextmanager
def _locked(path: Path, seconds: float) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting at most `seconds` for it."""
    deadline = time.monotonic() + seconds
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{path} stayed locked for {seconds:.0f} s (another build?)"
                    ) from None
                time.sleep(0.2)  # another process builds; its end is only seen by polling
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rootfs(recipe: Recipe, folder: Path) -> Path:
    """The cached root filesystem tar for `recipe`, made by mmdebstrap if not there yet."""
    tar = folder / f"{recipe.name}-{recipe.key}.tar"
    if tar.is_file():
        return tar
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise Unavailable(f"not installed: mmdebstrap ({INSTALL})")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        hooks = []
        for i, (path, (text, mode)) in enumerate(sorted(recipe.files.items())):
            local = Path(scratch) / f"file-{i}"
            local.write_text(text)
            hooks += [f"--customize-hook=upload {local} {path}"]
            hooks += [f'--customize-hook=chmod {mode:o} "$1{path}"']
        partial = Path(scratch) / "rootfs.tar"
        argv = [
            mmdebstrap,
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES),
            *hooks,
            SUITE,
            str(partial),
            MIRROR,
        ]
        try:
            made = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=BUILD_SECONDS,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"mmdebstrap did not finish in {BUILD_SECONDS:.0f} s") from None
        if made.returncode != 0:
            raise Unavailable(f"mmdebstrap failed: {_last_line(made.stderr)}")
        os.replace(partial, tar)  # whole or not there: never a half-written tar
    for stale in folder.glob(f"{recipe.name}-*.tar"):
        if stale != tar:  # an earlier recipe's: its image is being replaced
            stale.unlink(missing_ok=True)
    return tar


def _import(recipe: Recipe, tar: Path, engine: TestEngine) -> None:
    """The tar as `recipe.image`; an earlier build under that tag is removed (when no
    container still uses it) instead of left as a nameless image. `ENGINE import
    --change` is one command line for podman and docker."""

    def image_id() -> str:
        return engine.run("image", "inspect", "--format", "{{.Id}}", recipe.image).stdout.strip()

    earlier = image_id()
    changes = [*recipe.changes, f"LABEL {LABEL}={recipe.key}"]
    argv = ["import", *(f"--change={change}" for change in changes), str(tar), recipe.image]
    made = engine.run(*argv, timeout=BUILD_SECONDS)
    if made.returncode != 0:
        raise Unavailable(f"{engine.name} import failed: {_last_line(made.stderr)}")
    if earlier and earlier != image_id():
        engine.run("image", "rm", earlier)


@contextlib.contextmanager
def docker_engine(folder: Path) -> Iterator[TestEngine]:
    """docker, for the tests' containers: the Docker daemon that answers here, else
    podman's Docker-compatible API on a socket in `folder`, served for as long as this
    is held (its process is this function's own, stopped and reaped at the end).

    Raises Unavailable, saying why, when neither can be had."""
    real = TestEngine("docker")
    if shutil.which("docker") is None:
        raise Unavailable(NEEDS_DOCKER)
    if problem(real) is None:
        yield real
        return
    reason = problem()
    if reason is not None:
        raise Unavailable(f"no Docker daemon answers, and podman cannot stand in: {reason}")
    socket = folder / "docker.sock"
    stood_in = TestEngine("docker", MappingProxyType({"DOCKER_HOST": f"unix://{socket}"}))
    with (folder / "podman-service.log").open("wb") as log:
        service = subprocess.Popen(
            [ENGINE, "system", "service", "--time=0", f"unix://{socket}"],
            env=engine_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _until_it_answers(stood_in, service, folder / "podman-service.log")
        yield stood_in
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def _until_it_answers(engine: TestEngine, service: subprocess.Popen[bytes], log: Path) -> None:
    """Wait, within DAEMON_SECONDS, for `docker version` to get the service's answer."""
    deadline = time.monotonic() + DAEMON_SECONDS
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise Unavailable(f"podman system service exited: {_last_line(log.read_text())}")
        try:
            if engine.run("version", "--format", "{{.Server.Version}}", timeout=5).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)  # the socket is not there yet: only asking again tells
    raise Unavailable(f"podman's Docker API did not answer in {DAEMON_SECONDS:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in RECIPES:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(RECIPES)}")
    try:
        print(ensure(RECIPES[sys.argv[1]]))
    except Unavailable as exc:
        sys.exit(str(exc))
