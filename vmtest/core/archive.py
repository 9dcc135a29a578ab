"""Cache entries in one portable archive: write, read back verified, install atomically per entry.

An archive is a compressed tar stream (zstd through the ``zstd`` program when
the file name ends in ``.zst``, else xz from Python's ``tarfile``) whose
first member is ``vmtest-archive.json``, the manifest: for every entry its
kind, key, ``meta.json`` content and files (path, size, sha256, mode; or a
symlink's target). The files follow in manifest order, each entry's files
together. Reading is one pass over the stream (no seeking back into a
compressed file).

Installing an entry goes through :meth:`vmtest.core.cache.Cache.build`: the
files are written into the store's ``tmp/`` under the entry's lock, hashed
while written, and the directory is renamed into place only when every file
matched the manifest; a mismatch removes the directory and raises
:class:`~vmtest.core.errors.CacheError`. An entry already in the store is
kept (its key says it is the same content).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from vmtest.core.cache import KINDS, META, Cache
from vmtest.core.errors import CacheError, HostError

MANIFEST = "vmtest-archive.json"
FORMAT = 1
CHUNK = 1 << 20
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

# Decides what to do with an entry of an archive: None installs it, a string is why it is skipped.
Accept = Callable[[str, str, dict[str, Any]], str | None]
# Adjusts a verified entry's directory before it is published (e.g. a snapshot's backing file path).
Fixup = Callable[[str, Path, dict[str, Any]], None]


def entry_files(path: Path) -> list[Path]:
    """The files of an entry worth carrying, relative to ``path``: everything but ``meta.json`` (it travels
    in the manifest), hidden files and the image's overlay templates (they name a backing file by path)."""
    out = []
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if rel == Path(META) or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parent == Path(".") and rel.name.startswith("overlay-") and rel.suffix == ".qcow2":
            continue
        if item.is_symlink() or item.is_file():
            out.append(rel)
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_entry(cache: Cache, kind: str, key: str) -> dict[str, Any]:
    """The manifest record of a complete entry of ``cache``."""
    path = cache.lookup(kind, key)
    if path is None:
        raise CacheError(f"{kind}/{key}", str(cache.root), "not in the cache", "build it first")
    files: list[dict[str, Any]] = []
    for rel in entry_files(path):
        item = path / rel
        if item.is_symlink():
            files.append({"path": rel.as_posix(), "link": os.readlink(item)})
        else:
            st = item.stat()
            files.append(
                {"path": rel.as_posix(), "size": st.st_size, "sha256": sha256_file(item), "mode": st.st_mode & 0o777}
            )
    meta = json.loads((path / META).read_text())
    return {"kind": kind, "key": key, "meta": meta, "files": files}


@contextmanager
def _writer(tmp: Path, zstd: bool) -> Iterator[tarfile.TarFile]:
    """A tar stream into ``tmp``: zstd through the ``zstd`` program, else xz (preset 1: a qcow2 image
    compresses little more at higher presets, and takes many times longer)."""
    if not zstd:
        with tarfile.open(tmp, mode="w:xz", preset=1, format=tarfile.PAX_FORMAT) as tar:
            yield tar
        return
    program = shutil.which("zstd")
    if program is None:
        raise HostError(f"writing {tmp.name}: a .zst archive needs the zstd program (apt-get install zstd)")
    with open(tmp, "wb") as fh:
        proc = subprocess.Popen([program, "-q", "-T0", "-3", "-c"], stdin=subprocess.PIPE, stdout=fh)
        assert proc.stdin is not None
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                yield tar
        finally:
            proc.stdin.close()
            status = proc.wait()
    if status != 0:
        raise HostError(f"writing {tmp.name}: zstd exited with status {status}")


def write_archive(cache: Cache, entries: list[tuple[str, str]], out: Path, logger: logging.Logger) -> dict[str, Any]:
    """Write ``entries`` ((kind, key), in that order) of ``cache`` to the archive ``out`` (``.zst``: zstd,
    else xz), written under a temporary name and renamed when complete. Returns the manifest."""
    records = [describe_entry(cache, kind, key) for kind, key in entries]
    manifest = {"format": FORMAT, "entries": records}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with _writer(tmp, zstd=out.name.endswith(".zst")) as tar:
            blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            for record in records:
                base = cache.path(record["kind"], record["key"])
                logger.info("exporting %s/%s (%d files)", record["kind"], record["key"], len(record["files"]))
                for f in record["files"]:
                    tar.add(base / f["path"], arcname=f"{record['kind']}/{record['key']}/{f['path']}", recursive=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


@contextmanager
def _reader(path: Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(ZSTD_MAGIC):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise HostError(f"reading {path}: a zstd archive needs the zstd program (apt-get install zstd)")
        proc = subprocess.Popen([zstd, "-q", "-d", "-c", str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                yield tar
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    elif magic.startswith(XZ_MAGIC):
        with tarfile.open(path, mode="r|xz") as tar:
            yield tar
    else:
        raise CacheError("(archive)", str(path), "not a vmtest cache archive (neither xz nor zstd)")


@dataclass(frozen=True)
class Outcome:
    kind: str
    key: str
    status: str  # "installed", "present" or "skipped: why"


def _check_record(record: Any, source: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise CacheError("(manifest)", source, f"a manifest entry is not an object: {record!r}")
    kind, key = record.get("kind"), record.get("key")
    if kind not in KINDS or not isinstance(key, str) or not _SAFE_KEY.match(key):
        raise CacheError(f"{kind}/{key}", source, "the manifest names an unknown kind or an unsafe key")
    for f in record.get("files", []):
        rel = PurePosixPath(str(f.get("path", "")))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise CacheError(f"{kind}/{key}", source, f"unsafe file path {str(rel)!r} in the manifest")
    return kind, key


def _copy_verified(src: IO[bytes], dest: Path, record: dict[str, Any], f: dict[str, Any], source: str) -> None:
    digest = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != f.get("size") or digest.hexdigest() != f.get("sha256"):
        raise CacheError(
            f"{record['kind']}/{record['key']}",
            source,
            f"{f['path']} does not match the manifest (size {size}, expected {f.get('size')}; sha256 "
            f"{digest.hexdigest()[:16]}..., expected {str(f.get('sha256'))[:16]}...): the archive is corrupt; "
            "nothing of this entry was installed",
            "export it again, or let vmtest build it",
        )
    dest.chmod(int(f.get("mode", 0o644)))


def read_archive(
    cache: Cache,
    path: Path,
    logger: logging.Logger,
    accept: Accept | None = None,
    fixup: Fixup | None = None,
    source: str | None = None,
) -> list[Outcome]:
    """Install the entries of archive ``path`` into ``cache``, each verified and atomic (see the module
    docstring). ``accept`` may skip entries; ``fixup`` adjusts a verified entry before it is published."""
    source = source or str(path)
    outcomes = []
    with _reader(path) as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise CacheError("(manifest)", source, f"the archive does not start with {MANIFEST}")
        handle = tar.extractfile(first)
        assert handle is not None
        try:
            manifest = json.loads(handle.read())
        except ValueError as exc:
            raise CacheError("(manifest)", source, f"{MANIFEST} is not JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CacheError("(manifest)", source, f"unknown archive format {manifest.get('format')!r}")
        for record in manifest.get("entries", []):
            kind, key = _check_record(record, source)

            def members(record: dict[str, Any] = record) -> Iterator[tuple[dict[str, Any], tarfile.TarInfo]]:
                for f in record.get("files", []):
                    member = tar.next()
                    expected = f"{record['kind']}/{record['key']}/{f['path']}"
                    if member is None or member.name != expected:
                        raise CacheError(
                            f"{record['kind']}/{record['key']}",
                            source,
                            f"expected {expected} in the archive, found {member.name if member else 'its end'}",
                        )
                    yield f, member

            why = accept(kind, key, record.get("meta", {})) if accept else None
            if why is None and cache.lookup(kind, key) is not None:
                why = "present"
            if why is not None:
                for _ in members():  # skip its files: the stream moves on
                    pass
                outcomes.append(Outcome(kind, key, why if why == "present" else f"skipped: {why}"))
                continue

            called: list[bool] = []

            def install(tmp: Path, record: dict[str, Any] = record, called: list[bool] = called) -> dict[str, Any]:
                called.append(True)
                for f, member in members(record):
                    dest = tmp / f["path"]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if "link" in f:
                        if not member.issym() or member.linkname != f["link"]:
                            raise CacheError(
                                f"{record['kind']}/{record['key']}",
                                source,
                                f"{f['path']}: expected a symlink to {f['link']!r}",
                            )
                        os.symlink(f["link"], dest)
                        continue
                    data = tar.extractfile(member) if member.isfile() else None
                    if data is None:
                        raise CacheError(
                            f"{record['kind']}/{record['key']}", source, f"{f['path']} is not a file in the archive"
                        )
                    _copy_verified(data, dest, record, f, source)
                meta = dict(record.get("meta", {}))
                if fixup:
                    fixup(record["kind"], tmp, meta)
                return meta

            cache.build(kind, key, install, logger)
            if not called:  # another process installed it meanwhile: skip its files
                for _ in members():
                    pass
                outcomes.append(Outcome(kind, key, "present"))
                continue
            logger.info("installed %s/%s from %s", kind, key, source)
            outcomes.append(Outcome(kind, key, "installed"))
    return outcomes
