"""The on-disk cache: content-addressed entries that are complete or absent.

Layout under the cache directory (its owner passes it in: the run setting
``cache_dir``, :class:`vmtest.config.settings.Settings`)::

    images/<key>/     one complete guest image per key
    layers/<key>/     a suite's base layer (bootstrap + base packages, a tarball): only images' builds read it
    kernels/<key>/    kernel + stage-1 initrd + pruned module tree
    snapshots/<key>/  a booted machine: QEMU's saved state, its root disk at that instant, its boot log
    debs/             downloaded .deb files, reused across builds
    glyphs/<key>.json the grid reader's glyph tables (per kernel, parameters, resolution)
    accel.json        the accelerator probe's verdict for this host
    apt-names.txt     every package name the host's apt lists know (kept while the lists stay the same)
    apt-kernel.json   the kernel package apt picks for linux-image-amd64 (kept while lists and pins stay)
    snapshot-users.json  the snapshot each test's machine ("<test id>::<node>") last restored or saved
    refs/<hash>.json  a kept disk outside the cache and the entries it is an overlay on (kept by gc)
    tmp/<kind>-<key>.<random>/   builds in progress
    locks/<kind>-<key>.lock      one flock per key
    locks/sessions.lock          shared-locked by every pytest session using the cache (Cache.join_sessions)

An entry is built in ``tmp/`` and renamed into place only when finished, so a
killed build never leaves something that looks complete. Builders of the
same key serialise on the key's lock; the second one finds the entry ready
(a snapshot's saver holds a :class:`Reservation` instead: whoever does not
get it boots without saving, never waiting).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vmtest.core import keptdisks
from vmtest.core.log import log

META = "meta.json"
# Entries used this recently stay whatever the size bound (Cache.trim): another session may be about to open them.
TRIM_GRACE = 600.0
KINDS = ("images", "kernels", "snapshots", "bootdisks", "layers")


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path``, a directory or a file (sparse files count what they use)."""
    if not path.is_dir():
        try:
            return os.lstat(path).st_blocks * 512
        except OSError:
            return 0
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class Entry:
    kind: str
    key: str
    path: Path
    size: int
    created: float
    last_used: float
    meta: dict[str, Any]


class Reservation:
    """A held build lock and its build directory (:meth:`Cache.reserve`)."""

    def __init__(self, cache: Cache, kind: str, key: str, fh: IO[str], tmp: Path) -> None:
        self.cache = cache
        self.kind = kind
        self.key = key
        self.tmp = tmp
        self._fh: IO[str] | None = fh

    def publish(self, meta: dict[str, Any]) -> Path:
        """Make the entry complete (meta written last, directory renamed into place) and let go of the lock."""
        try:
            return self.cache._publish(self.kind, self.key, self.tmp, meta)
        finally:
            self.release()

    def abandon(self) -> None:
        """Remove the build directory and let go of the lock (idempotent)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _base_gone(entry: Entry, bases: set[str], doomed: set[str]) -> bool:
    """Whether what a snapshot or bootable disk is made of is gone or going: its image in this cache, or the
    bootable disk a boot-loader machine's snapshot is an overlay on (of ``bases``, ``doomed`` among them), or a
    foreign machine's snapshot's image file (``foreign_image``)."""
    foreign = entry.meta.get("foreign_image")
    if foreign:
        return not Path(str(foreign)).is_file()
    base = entry.meta.get("image_key")
    return base in doomed or base not in bases


def _made_of(entries: list[Entry], image_key: str) -> list[Entry]:
    """The entries made of image (or bootable disk) ``image_key``: its bootable disks and booted snapshots, and
    the snapshots of those disks (their meta names what they are made of)."""
    out: list[Entry] = []
    bases = {image_key}
    for kind in ("bootdisks", "snapshots"):  # (a boot-loader machine's snapshot names its bootable disk)
        found = [e for e in entries if e.kind == kind and e.meta.get("image_key") in bases]
        out += found
        bases |= {e.key for e in found}
    return out


def _try_lock(fh: IO[str]) -> bool:
    """Take ``fh``'s exclusive flock if no other process holds it; False when one does."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


APT_ANSWERS = {"names": "apt-names.txt", "kernel": "apt-kernel.json"}  # Cache.apt_answer


class Cache:
    """Owner of the cache directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def debs(self) -> Path:
        path = self.root / "debs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def glyph_table(self, key: str) -> Path:
        """Where the grid reader's glyph table for ``key`` (kernel, parameters, resolution) is kept."""
        return self.root / "glyphs" / f"{key}.json"

    @property
    def refs(self) -> Path:
        """Where kept disks record the entries they are overlays on (:mod:`vmtest.core.keptdisks`)."""
        return self.root / "refs"

    @property
    def accel_verdict(self) -> Path:
        """The accelerator probe's cached verdict for this host."""
        return self.root / "accel.json"

    def apt_answer(self, question: str) -> Path:
        """Where an answer of the host's apt is kept while its lists stay the same: ``"names"``, every package
        name it knows (:func:`vmtest.image.packages.known_names`), or ``"kernel"``, the kernel package it
        picks (:func:`vmtest.image.kernel.resolve`)."""
        return self.root / APT_ANSWERS[question]

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @property
    def _snapshot_users(self) -> Path:
        return self.root / "snapshot-users.json"

    def snapshot_users(self) -> dict[str, str]:
        """The booted snapshot each test's machine (``"<test id>::<node>"``) last restored or saved in this
        cache, as recorded by the pytest plugin ({} when nothing was)."""
        try:
            data = json.loads(self._snapshot_users.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def record_snapshot_users(self, used: dict[str, str]) -> None:
        """Add ``used`` (``"<test id>::<node>"`` -> snapshot key) to :meth:`snapshot_users` (one writer at a
        time; the file is replaced whole). Records of snapshots no longer in the cache are dropped."""
        if not used:
            return
        with self._lock_file("snapshot-users") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            merged = {**self.snapshot_users(), **used}
            present = {path.name for path in (self.root / "snapshots").glob("*")}
            merged = {user: key for user, key in sorted(merged.items()) if key in present}
            tmp = self._snapshot_users.with_name(f".snapshot-users.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(merged, indent=1) + "\n")
            os.replace(tmp, self._snapshot_users)

    def lookup(self, kind: str, key: str) -> Path | None:
        """The entry's directory if it is complete (and mark it used), else None."""
        path = self.path(kind, key)
        if (path / META).is_file():
            os.utime(path / META)
            return path
        return None

    def _lock_file(self, name: str) -> IO[str]:
        """The lock file of ``name`` (``<kind>-<key>``), made if missing; open for the caller to close."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return open(locks / f"{name}.lock", "a+")

    @contextmanager
    def lock(self, kind: str, key: str, logger: logging.Logger) -> Iterator[None]:
        with self._lock_file(f"{kind}-{key}") as fh:
            if not _try_lock(fh):
                log(logger, f"another process is building {kind}/{key[:12]}; waiting for it")
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def build(
        self,
        kind: str,
        key: str,
        builder: Callable[[Path], dict[str, Any]],
        logger: logging.Logger,
    ) -> Path:
        """Return the entry for ``key``, building it with ``builder(tmpdir) -> meta`` if missing."""
        found = self.lookup(kind, key)
        if found:
            return found
        with self.lock(kind, key, logger):
            found = self.lookup(kind, key)
            if found:
                return found
            tmp = self._new_tmp(kind, key)
            try:
                return self._publish(kind, key, tmp, builder(tmp))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def reserve(self, kind: str, key: str) -> Reservation | None:
        """The exclusive right to build entry ``key`` over a longer time (a snapshot is saved from a running
        machine), or None when another process holds it. Publish it or abandon it."""
        fh = self._lock_file(f"{kind}-{key}")  # held until the reservation ends
        if not _try_lock(fh):
            fh.close()
            return None
        return Reservation(self, kind, key, fh, self._new_tmp(kind, key))

    def _new_tmp(self, kind: str, key: str) -> Path:
        """A fresh build directory for ``key`` (we hold its lock: leftovers of killed builds go first)."""
        self._remove_partial(kind, key)
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-{key}.", dir=tmp_root))

    def _publish(self, kind: str, key: str, tmp: Path, meta: dict[str, Any]) -> Path:
        """Write ``meta`` last and rename ``tmp`` into place: the entry is complete or absent."""
        meta = {**meta, "kind": kind, "key": key, "created": time.time()}
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a stale entry (e.g. a snapshot QEMU refused): replace it
            doomed = self.root / "tmp" / f"{kind}-{key}.removing"
            os.rename(final, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        os.rename(tmp, final)
        return final

    def remove(self, kind: str, key: str, logger: logging.Logger) -> None:
        """Delete an entry (under its lock, so no reader sees half of it)."""
        with self.lock(kind, key, logger):
            path = self.path(kind, key)
            if path.exists():
                doomed = self.root / "tmp" / f"{kind}-{key}.removing"
                doomed.parent.mkdir(parents=True, exist_ok=True)
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)

    def remove_image(self, key: str, logger: logging.Logger) -> list[str]:
        """Delete image ``key`` and what was made of it (its booted snapshots and bootable disks, whose disks
        are overlays on it or copies of it: a rebuilt image of the same key is another file system, so they
        would read garbage through it). Returns what was removed."""
        made_of = _made_of(self.entries(), key)
        for entry in made_of:
            self.remove(entry.kind, entry.key, logger)
        self.remove("images", key, logger)
        return [f"{e.kind}/{e.key}" for e in made_of]

    def _remove_partial(self, kind: str, key: str) -> None:
        """Remove leftovers of killed builds of this key (we hold its lock)."""
        for stale in (self.root / "tmp").glob(f"{kind}-{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)

    def entries(self) -> list[Entry]:
        out = []
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for path in sorted(base.iterdir()):
                meta_file = path / META
                if not meta_file.is_file():
                    continue
                try:
                    meta = json.loads(meta_file.read_text())
                except (OSError, ValueError):
                    meta = {}
                st = meta_file.stat()
                out.append(
                    Entry(kind, path.name, path, disk_usage(path), meta.get("created", st.st_ctime), st.st_mtime, meta)
                )
        return out

    def _builds(self) -> list[tuple[Path, str]]:
        """Every build directory (in progress or left by a killed build) and the name of its lock."""
        tmp_root = self.root / "tmp"
        if not tmp_root.is_dir():
            return []
        return [(path, path.name.rsplit(".", 1)[0]) for path in sorted(tmp_root.iterdir())]

    def partial_builds(self) -> list[tuple[Path, bool]]:
        """(directory, still being built) for every build in progress or left by a killed one."""
        result = []
        for path, name in self._builds():
            lock = self.root / "locks" / f"{name}.lock"
            active = False
            if lock.exists():
                with open(lock, "a+") as fh:
                    active = not _try_lock(fh)
                    if not active:
                        fcntl.flock(fh, fcntl.LOCK_UN)
            result.append((path, active))
        return result

    def sweep_partial(self) -> list[tuple[Path, int]]:
        """Remove the build directories left by killed builds (never one being built: each goes while we
        hold its key's lock). Returns (directory, bytes freed) for each one removed."""
        removed = []
        for path, name in self._builds():
            with self._lock_file(name) as fh:
                if not _try_lock(fh):
                    continue  # being built (or removed) right now
                if path.exists():
                    size = disk_usage(path)
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append((path, size))
        return removed

    def _kept(self, entries: list[Entry]) -> set[tuple[str, str]]:
        """(kind, key) of every entry a kept disk needs (:mod:`vmtest.core.keptdisks`), with their images."""
        needed = keptdisks.needed(self.refs)
        kept = {(e.kind, e.key) for e in entries if any(f.is_relative_to(e.path) for f in needed)}
        return kept | {("images", str(e.meta.get("image_key"))) for e in entries if (e.kind, e.key) in kept}

    def join_sessions(self) -> IO[str]:
        """Mark a pytest session as using this cache until the returned file is closed (a shared lock on
        ``locks/sessions.lock``): :meth:`alone` tells a session whether another one is still running."""
        fh = self._lock_file("sessions")
        fcntl.flock(fh, fcntl.LOCK_SH)
        return fh

    @staticmethod
    def alone(session: IO[str]) -> bool:
        """Whether no other session (:meth:`join_sessions`) uses the cache now: then this one may trim it (an
        enclosing session, e.g. a test suite that runs pytest on the same cache, trims at its own end, and
        another running session may be about to open what it has not used yet). Call it at the very end: the
        session's own mark may be gone after it."""
        try:
            fcntl.flock(session, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def trim(self, max_bytes: int, used_since: float) -> list[tuple[str, int]]:
        """Remove entries until the cache holds at most ``max_bytes`` (0: no bound); returns (entry, bytes)
        for each removed. Never an entry used at or after ``used_since`` (this session's) or one a kept disk
        needs. Least recently used first: snapshots, bootable disks and base layers (a boot, a copy or a
        bootstrap away), then images
        (with what was made of them), then kernels no remaining image uses."""
        if max_bytes <= 0:
            return []
        entries = self.entries()
        total = sum(e.size for e in entries)
        if total <= max_bytes:
            return []
        logger = logging.getLogger("vmtest.cache")
        kept = self._kept(entries)
        gone: set[tuple[str, str]] = set()
        removed: list[tuple[str, int]] = []

        def drop(entry: Entry) -> None:
            nonlocal total
            self.remove(entry.kind, entry.key, logger)
            gone.add((entry.kind, entry.key))
            removed.append((f"{entry.kind}/{entry.key}", entry.size))
            total -= entry.size

        def candidates(*kinds: str) -> list[Entry]:
            return sorted(
                (
                    e
                    for e in entries
                    if e.kind in kinds
                    and e.last_used < used_since
                    and (e.kind, e.key) not in kept
                    and (e.kind, e.key) not in gone
                ),
                key=lambda e: e.last_used,
            )

        def drop_with_what_is_made_of(base: Entry) -> None:
            """Drop ``base`` and the entries made of it (an image's or bootable disk's snapshots and disks), unless
            one of those is this session's or kept: then all of them stay."""
            if (base.kind, base.key) in gone:
                return  # (a snapshot that went with its bootable disk)
            made_of = [e for e in _made_of(entries, base.key) if (e.kind, e.key) not in gone]
            if any((e.kind, e.key) in kept or e.last_used >= used_since for e in made_of):
                return
            for entry in made_of:
                drop(entry)
            drop(base)

        for entry in candidates("snapshots", "bootdisks", "layers"):
            if total <= max_bytes:
                return removed
            drop_with_what_is_made_of(entry)
        for image in candidates("images"):
            if total <= max_bytes:
                return removed
            drop_with_what_is_made_of(image)
        in_use = {e.meta.get("kernel_key") for e in entries if e.kind == "images" and ("images", e.key) not in gone}
        for kernel in candidates("kernels"):
            if total <= max_bytes:
                break
            if kernel.key not in in_use:
                drop(kernel)
        return removed

    def gc(self, max_age_days: float, everything: bool = False) -> list[str]:
        """Keep every entry a kept disk needs (:mod:`vmtest.core.keptdisks`); remove stale partial builds;
        snapshots and bootable disks unused for ``max_age_days`` or whose image goes; images and base layers
        unused for ``max_age_days``; kernels that no remaining image uses and that were not used themselves
        for ``max_age_days`` (a build in progress may be about to use one). Returns what was removed."""
        removed = [f"partial build {path.name}" for path, _ in self.sweep_partial()]
        now = time.time()
        logger = logging.getLogger("vmtest.cache")
        entries = self.entries()

        def stale(entry: Entry) -> bool:
            return everything or now - entry.last_used > max_age_days * 86400

        kept = self._kept(entries)  # kept disks (--vm-keep-state, run-vm) need their bases, whatever their age
        images = {e.key for e in entries if e.kind == "images"}
        doomed_images = {e.key for e in entries if e.kind == "images" and stale(e) and ("images", e.key) not in kept}
        # a bootable disk is a copy of its image and a snapshot's disk an overlay on its image (or, for a
        # boot-loader machine, on its bootable disk): they go with what they are made of
        disks = {e.key for e in entries if e.kind == "bootdisks"}
        doomed_disks = {
            e.key
            for e in entries
            if e.kind == "bootdisks"
            and ("bootdisks", e.key) not in kept
            and (stale(e) or _base_gone(e, images, doomed_images))
        }
        for entry in entries:
            if entry.kind == "bootdisks" and entry.key in doomed_disks:
                gone = True
            elif entry.kind == "snapshots" and ("snapshots", entry.key) not in kept:
                gone = stale(entry) or _base_gone(entry, images | disks, doomed_images | doomed_disks)
            else:
                gone = False
            if gone:
                self.remove(entry.kind, entry.key, logger)
                removed.append(f"{entry.kind}/{entry.key}")
        kept_kernels = set()
        for entry in entries:
            if entry.kind != "images":
                continue
            if entry.key in doomed_images:
                self.remove(entry.kind, entry.key, logger)
                removed.append(f"images/{entry.key}")
            else:
                kept_kernels.add(entry.meta.get("kernel_key"))
        for entry in entries:  # a base layer is only read by image builds: another build makes it again
            if entry.kind == "layers" and stale(entry):
                self.remove(entry.kind, entry.key, logger)
                removed.append(f"layers/{entry.key}")
        for entry in entries:
            if entry.kind == "kernels" and entry.key not in kept_kernels and stale(entry):
                self.remove(entry.kind, entry.key, logger)
                removed.append(f"kernels/{entry.key}")
        if everything and (self.root / "debs").is_dir():
            shutil.rmtree(self.root / "debs", ignore_errors=True)
            removed.append("debs")
        return removed
