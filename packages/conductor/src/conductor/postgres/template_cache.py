"""The template cache of `kind = "postgres"`: initdb once, then copy its result per run.

initdb (plus creating the database) costs 0.5-2 s; copying the folder it leaves costs a
fraction of that. An entry is `<cache>/conductor/postgres/<key>/`, holding `data/` (a
cluster that initdb and one CREATE DATABASE left, never started) and a manifest, written
last, that lists every folder and every file with its size.

An entry is made whole in a private staging folder and then renamed into place, so a
reader sees all of it or nothing, and two runs building the same entry at once both
succeed (the second rename loses and its folder is dropped). Anything that does not
match its manifest - a missing or truncated file, a missing manifest - is doubt, and
doubt means a fresh initdb for this run and a new entry for the next: the cache can
make a run faster, never break it. The cache is never removed by a run's teardown.
Damage that keeps every size (a file overwritten with zeros) passes the manifest; the
server finds it, before it is ready, and the service then falls back once to initdb,
whose cluster replaces the entry (service.Service._fall_back, clusters.Cluster.refill).

Copying ~40 MB costs 0.1 s on a tmpfs but can cost a second on a busy disk, so a run
also leaves a spare: once its own server is ready, it copies the entry once more, in
the background, to `<entry>/spare/`, and the next run takes that copy with one rename
instead of copying. A spare is made only where that rename can work (the cache and the
temp dir on one file system), is complete when its marker is there (written last), and
is taken by one run only (the rename is atomic); without one, a run copies.

The cache holds at most ENTRIES entries ($CONDUCTOR_PG_CACHE_ENTRIES), each ~40 MB and
one per server version, user, database and password: storing one more drops the least
recently used (every copy and spare taken touches its entry). Only folders carrying
conductor's manifest count as entries, are ever dropped, or are emptied by
`conductor clean --cache`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conductor.process import ownership

FORMAT = 1  # bump whenever what goes into an entry changes (initdb options, layout)
MANIFEST = "conductor-cache.json"
DATA = "data"
SPARE = "spare"
SPARE_MARKER = "conductor-spare.json"
STALE_AFTER = 3600.0  # seconds after which a staging folder is a dead run's
ENTRIES = 5  # entries kept (one per binaries, user, database and password), LRU first out
ENTRIES_ENV = "CONDUCTOR_PG_CACHE_ENTRIES"  # how many, instead of ENTRIES


class CacheDoubt(Exception):
    """A cache entry that cannot be trusted; the message says why."""


class Cancelled(Exception):
    """The run gave up (teardown or a deadline) while a copy was under way."""


def root(environ: Mapping[str, str] | None = None) -> Path | None:
    """`$XDG_CACHE_HOME/conductor/postgres`, or `~/.cache/conductor/postgres`; None when
    there is no home to put it in (the run then goes without a cache)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "conductor" / "postgres"


def bound(environ: Mapping[str, str] | None = None) -> int:
    """How many entries the cache keeps: $CONDUCTOR_PG_CACHE_ENTRIES, else ENTRIES; read
    from conductor's own environment, as the cache's place is (root). ValueError, in
    one line naming the variable, for anything but a whole number of at least 1
    (checked when the plan is made, so a run never starts on a typo)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENTRIES_ENV, "")
    if value == "":
        return ENTRIES
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{ENTRIES_ENV}={value!r} is not a whole number of at least 1 (how many "
            f"PostgreSQL template cache entries to keep; default {ENTRIES}); set one, "
            "or unset it"
        )
    return int(value)


def key(bindir: Path, *, user: str, database: str, password: str | None) -> str:
    """What an entry depends on, hashed: the server binaries (path, size, mtime, inode:
    a package upgrade changes them), the superuser, the database and the password.

    Settings given as `-c` options are not part of it: they live on the server's
    command line, not in the folder. The password is hashed with the rest, never stored.
    """
    identity: list[object] = [FORMAT, str(bindir.resolve()), user, database]
    identity.append(None if password is None else hashlib.sha256(password.encode()).hexdigest())
    for name in ("initdb", "postgres"):
        info = (bindir / name).stat()
        identity.append([info.st_size, info.st_mtime_ns, info.st_ino])
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Manifest:
    """What an entry's manifest lists: every folder and file of its cluster (paths
    relative to `data/`, never reaching out of it), each file's size, and PG_VERSION."""

    folders: tuple[str, ...]
    files: tuple[tuple[str, int], ...]
    pg_version: str


def read_manifest(entry: Path) -> Manifest:
    """The entry's manifest; CacheDoubt when it is missing, unreadable, or another's."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("key") != entry.name:
            raise CacheDoubt("its manifest is from another version or entry")
        return Manifest(
            folders=tuple(_relative(d) for d in manifest["folders"]),
            files=tuple((_relative(f), int(size)) for f, size in manifest["files"]),
            pg_version=str(manifest["pg_version"]),
        )
    except CacheDoubt:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CacheDoubt(f"its manifest is missing or unreadable ({exc})") from None


def copy_out(
    entry: Path, dest: Path, owner: tuple[int, int] | None, cancel: threading.Event
) -> None:
    """Copy the entry's cluster to `dest` (which must not exist), checking every file
    against the manifest; CacheDoubt on any mismatch. `owner` (uid, gid) is set on
    everything copied, for a server that runs as another user."""
    manifest = read_manifest(entry)
    source = entry / DATA
    try:
        for folder in ["", *manifest.folders]:
            target = dest / folder
            os.mkdir(target, 0o700)
            if owner is not None:
                os.chown(target, *owner)
        for name, size in manifest.files:
            if cancel.is_set():
                raise Cancelled
            _copy_file(source / name, dest / name, size, owner, cancel)
    except FileNotFoundError as exc:
        raise CacheDoubt(f"{exc.filename} is missing") from None
    # Any other OSError is the destination's (a full disk): not the cache's fault.
    _check_pg_version(dest, manifest)
    _used(entry)


def _check_pg_version(data: Path, manifest: Manifest) -> None:
    try:
        found = (data / "PG_VERSION").read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        raise CacheDoubt(f"{data / 'PG_VERSION'} is missing") from None
    if found != manifest.pg_version:
        raise CacheDoubt(f"PG_VERSION says {found!r}, its manifest {manifest.pg_version!r}")


def check_against(data: Path, manifest: Manifest) -> None:
    """CacheDoubt unless `data` holds exactly the manifest's folders and files, as real
    folders and regular files of the listed sizes: lstat only, nothing is opened (a
    spare is used as it lies, so a FIFO in it would block the server that opens it)."""
    folders = set(manifest.folders)
    files = dict(manifest.files)
    seen_folders: set[str] = set()
    seen_files: set[str] = set()
    pending = [""]
    while pending:
        here = pending.pop()
        with os.scandir(os.path.join(data, here)) as found:
            for item in found:
                relative = os.path.join(here, item.name)
                info = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) and relative in folders:
                    seen_folders.add(relative)
                    pending.append(relative)
                elif stat.S_ISREG(info.st_mode) and files.get(relative) == info.st_size:
                    seen_files.add(relative)
                else:
                    raise CacheDoubt(f"{relative} is not what its manifest lists")
    missing = sorted((folders - seen_folders) | (files.keys() - seen_files))
    if missing:
        raise CacheDoubt(f"{missing[0]} is missing")
    _check_pg_version(data, manifest)


def store(
    data: Path, entries: Path, name: str, cancel: threading.Event, *, limit: int = ENTRIES
) -> bool:
    """Make `entries/name` a copy of the fresh cluster in `data`, then drop the least
    recently used entries beyond `limit`. False when another run stored the same entry
    first (theirs is kept: it is the same cluster)."""
    import tempfile

    entries.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=entries))
    try:
        folders: list[str] = []
        files: list[list[object]] = []
        os.mkdir(staging / DATA, 0o700)
        for top, dirs, names in os.walk(data):
            dirs.sort()
            here = Path(top).relative_to(data)
            for folder in dirs:
                if (Path(top) / folder).is_symlink():
                    raise CacheDoubt(f"{here / folder} is a symbolic link; not cached")
                folders.append(str(here / folder))
                os.mkdir(staging / DATA / here / folder, 0o700)
            for file in sorted(names):
                if cancel.is_set():
                    raise Cancelled
                size = _copy_file(
                    Path(top) / file, staging / DATA / here / file, None, None, cancel
                )
                files.append([str(here / file), size])
        manifest = {
            "format": FORMAT,
            "key": name,
            "pg_version": (data / "PG_VERSION").read_text(encoding="ascii").strip(),
            "folders": folders,
            "files": files,
        }
        # Written last: an entry without it is never used.
        (staging / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        try:
            os.rename(staging, entries / name)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        _drop_stale(entries)
        evict(entries, name, limit)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ours(folder: Path) -> bool:
    """An entry conductor made: a real folder (not a link) whose manifest, a regular
    file, names it. Nothing else in the cache folder is ever dropped or emptied."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        manifest = folder / MANIFEST
        if not stat.S_ISREG(os.lstat(manifest).st_mode):
            return False
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("key") == folder.name)
    except (OSError, ValueError, AttributeError):
        return False


def _used(entry: Path) -> None:
    """Mark the entry used now: its folder's time orders eviction (least recent first)."""
    with contextlib.suppress(OSError):
        os.utime(entry)


def evict(entries: Path, keep: str, limit: int) -> list[str]:
    """Drop conductor's entries beyond `limit`, least recently used first, never `keep`
    (the one just stored); the names dropped. A run copying from one that goes finds
    it missing, doubts it and runs initdb: the bound costs time, never a run."""
    found: list[tuple[float, Path]] = []
    for folder in entries.iterdir():
        if folder.name.startswith(".") or folder.name == keep or not ours(folder):
            continue
        with contextlib.suppress(OSError):
            found.append((os.lstat(folder).st_mtime, folder))
    found.sort(reverse=True)
    dropped = []
    for _, folder in found[max(limit - 1, 0) :]:
        discard(folder)
        dropped.append(folder.name)
    return dropped


@dataclass
class Emptied:
    """What `conductor clean --cache` did: entries removed; what it left alone (not
    conductor's, or a live run's) and what it could not remove, each one line."""

    folder: Path | None = None  # the cache's folder (None: no home to have one in)
    removed: list[Path] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def empty(entries: Path) -> Emptied:
    """Remove every entry conductor made in `entries` (see ours), and the staging and
    trash folders of dead runs; nothing else, and nothing through a link."""
    done = Emptied(entries)
    for made in (entries.parent, entries):  # conductor/ and conductor/postgres/
        try:
            info = os.lstat(made)
        except FileNotFoundError:
            return done
        if not stat.S_ISDIR(info.st_mode):
            what = "a link" if stat.S_ISLNK(info.st_mode) else "not a folder"
            done.left.append(f"{made} is {what}: conductor did not make it, so it is left")
            return done
    for folder in sorted(entries.iterdir()):
        if ours(folder):
            problem = _remove(folder)
            if problem is None:
                done.removed.append(folder)
            else:
                done.failed.append(problem)
        elif folder.name.startswith((".build-", ".trash-")) and _is_real_folder(folder):
            if folder.name.startswith(".trash-") or _stale(folder):
                if problem := _delete(folder):
                    done.left.append(problem)
            else:
                done.left.append(f"{folder}: being built by a live run")
        else:
            done.left.append(f"{folder}: no manifest of conductor's in it")
    return done


def _is_real_folder(folder: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode)
    except OSError:
        return False


def _stale(folder: Path) -> bool:
    import time

    try:
        return time.time() - folder.lstat().st_mtime > STALE_AFTER
    except OSError:
        return False


def _remove(entry: Path) -> str | None:
    """Rename aside (so no run starts on it), then delete; None when it is gone, else
    one line saying what is left and what to do."""
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(entry, trash)
    except FileNotFoundError:
        return None  # dropped by a run meanwhile
    except OSError as exc:
        return f"{entry}: cannot be removed ({exc.strerror}); remove it by hand"
    try:
        if ownership.delete_tree(trash):
            return None
    except ownership.NotOurs as exc:
        return f"{exc}; left as it is"
    return f"{trash}: could not be removed entirely; remove it by hand"


def claim_spare(entry: Path, dest: Path, owner_uid: int) -> bool:
    """Move the entry's spare cluster to `dest` (which must not exist) with one rename,
    then check it against the entry's manifest. False when there is none, it is not
    complete or not owned by `owner_uid` (then it is dropped), or another run took it
    first; CacheDoubt (and nothing left at `dest`) when it does not match the manifest.
    Checked after the rename, at `dest`, so no other run changes it meanwhile."""
    spare = entry / SPARE
    if not spare.exists():
        return False
    try:
        marker = json.loads((spare / SPARE_MARKER).read_text(encoding="utf-8"))
        data = (spare / DATA).lstat()
        usable = (
            marker.get("format") == FORMAT
            and stat.S_ISDIR(data.st_mode)
            and data.st_uid == owner_uid
        )
    except (OSError, ValueError, AttributeError):
        usable = False  # taken by another run a moment ago, or damaged
    taken = False
    if usable:
        try:
            os.rename(spare / DATA, dest)
            taken = True
        except OSError:
            pass  # another run took it
    _drop_spare(spare)  # the empty shell, or a spare that cannot be used
    if taken:
        try:
            check_against(dest, read_manifest(entry))
        except (CacheDoubt, OSError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, CacheDoubt):
                raise
            raise CacheDoubt(f"it cannot be examined ({exc})") from None
        _used(entry)
    return taken


def make_spare(entry: Path, owner: tuple[int, int] | None, cancel: threading.Event) -> bool:
    """Copy the entry to its spare for the next run; False when one is there already."""
    import tempfile

    if (entry / SPARE).exists():
        return False
    _drop_stale(entry)
    staging = Path(tempfile.mkdtemp(prefix=".spare-", dir=entry))
    try:
        copy_out(entry, staging / DATA, owner, cancel)
        (staging / SPARE_MARKER).write_text(json.dumps({"format": FORMAT}), encoding="utf-8")
        try:
            os.rename(staging, entry / SPARE)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop_spare(spare: Path) -> None:
    """Renamed aside, then deleted: it lives in our cache, so it is ours. At worst this
    drops a spare another run has just put in place, which only costs the next run a
    copy; it never leaves a spare that no run would use or replace."""
    trash = spare.with_name(f".trash-spare-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(spare, trash)
    except OSError:
        return
    _delete(trash)


def _delete(folder: Path) -> str | None:
    """Delete a folder of conductor's in the cache, but never through a mount point in
    it (ownership.delete_tree: shutil.rmtree alone deleted what a bind mount showed
    there); None when that was done, else the one line saying what was left."""
    try:
        ownership.delete_tree(folder)
    except ownership.NotOurs as exc:
        return f"{exc}; left as it is"
    return None


def _drop_stale(entries: Path) -> None:
    """Staging and trash folders of runs killed mid-way (SIGKILL): ours by their name
    inside our own cache folder, and an hour old, which no live copy ever is."""
    for folder in entries.iterdir():
        if folder.name.startswith((".build-", ".trash-", ".spare-")) and _stale(folder):
            _delete(folder)


def discard(entry: Path) -> None:
    """Take a doubtful entry out of use: renamed aside first (atomic, so no reader starts
    on it later), then deleted. Only folders inside the cache are ever passed here."""
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return  # gone already, or replaced by another run: nothing of ours to drop
    with contextlib.suppress(ownership.NotOurs):  # a mount in it: left, out of use
        ownership.delete_tree(trash)


def _relative(name: object) -> str:
    """A manifest path, refused unless it stays inside the entry."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise CacheDoubt(f"its manifest names {name!r}")
    return name


# Not on Windows, which has no FIFOs to wait on.
_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def _copy_file(
    src: Path,
    dst: Path,
    size: int | None,
    owner: tuple[int, int] | None,
    cancel: threading.Event,
) -> int:
    """Copy one regular file (kernel-side where possible); with `size`, the source must
    have exactly that many bytes. Returns the number of bytes copied. Anything but a
    regular file is refused before it is opened, and opened without blocking: opening a
    FIFO for reading waits for a writer, which hung the run, deaf to signals."""
    try:
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise CacheDoubt(f"{src} is not a regular file")
        fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | _NO_WAIT)
    except OSError as exc:  # missing, or a symbolic link (ELOOP): the source is at fault
        raise CacheDoubt(f"{src} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fin)
        if not stat.S_ISREG(info.st_mode):
            raise CacheDoubt(f"{src} is not a regular file")
        if size is not None and info.st_size != size:
            raise CacheDoubt(f"{src} has {info.st_size} bytes, its manifest says {size}")
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if owner is not None:
                os.fchown(fout, *owner)
            copied = _copy_bytes(fin, fout, info.st_size, cancel)
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    if copied != info.st_size:
        raise CacheDoubt(f"{src} ended after {copied} of {info.st_size} bytes")
    return copied


# How much one step of a copy moves before it looks at `cancel` again: a Ctrl-C during
# the copy of a big file (a cluster with a large table, or one planted in an entry) is
# answered within one step, not at the end of the file (1.5 GB took 6 s on this disk).
STEP = 8 << 20


def _copy_bytes(fin: int, fout: int, size: int, cancel: threading.Event) -> int:
    """Copy `size` bytes in steps of STEP; Cancelled as soon as `cancel` is set."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < size:
                if cancel.is_set():
                    raise Cancelled
                step = os.copy_file_range(fin, fout, min(size - done, STEP))
                if step == 0:
                    return done
                done += step
            return done
        except OSError as exc:  # another file system or an old kernel: copy by hand
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    while done < size:
        if cancel.is_set():
            raise Cancelled
        chunk = os.read(fin, min(size - done, 1 << 20))
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view) :]
        done += len(chunk)
    return done
