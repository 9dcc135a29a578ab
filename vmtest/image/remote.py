"""A read-only remote cache (the ``cache_url`` run setting): fetch a missing entry before building it.

The server holds one archive per entry, as ``vmtest cache export -o DIR/``
writes them: ``<url>/<kind>/<key>.tar.zst`` (or ``.tar.xz``), any static
HTTP(S) server will do. A missing image, kernel or booted snapshot is downloaded into the
cache's ``tmp/`` and installed by :func:`vmtest.core.archive.read_archive`:
every file is checked against the archive's manifest and the entry appears
complete or not at all, as in Nix's binary caches. Whatever goes wrong (no
such entry, the server unreachable, a corrupt entry) is logged with the
reason and the entry is built locally. The checksums catch a damaged
transfer or file, not a malicious server: use a URL you trust.
"""

from __future__ import annotations

import logging
import lzma
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from vmtest.core.archive import Accept, Fixup, read_archive
from vmtest.core.cache import Cache
from vmtest.core.errors import CacheError, HostError
from vmtest.core.log import log

SUFFIXES = (".tar.zst", ".tar.xz")
TIMEOUT = 60.0


def entry_url(base: str, kind: str, key: str, suffix: str) -> str:
    return f"{base.rstrip('/')}/{kind}/{key}{suffix}"


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response, open(dest, "wb") as out:  # noqa: S310 - http(s) only
        shutil.copyfileobj(response, out, 1 << 20)


def fetch(
    cache: Cache,
    base: str,
    kind: str,
    key: str,
    logger: logging.Logger,
    accept: Accept | None = None,
    fixup: Fixup | None = None,
    otherwise: str = "building it locally",
) -> bool:
    """Install entry ``kind/key`` from the remote cache at ``base``; True if it is now in ``cache``.
    ``accept`` may refuse it (the reason is logged), ``fixup`` adjusts it before it is published (see
    :func:`vmtest.core.archive.read_archive`); ``otherwise`` says what happens when it is not fetched."""

    def asked(k: str, kk: str, meta: dict[str, object]) -> str | None:
        if (k, kk) != (kind, key):
            return "not the entry asked for"
        return accept(k, kk, meta) if accept is not None else None

    tmp_root = cache.root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES:
        url = entry_url(base, kind, key, suffix)
        dest = tmp_root / f"download-{kind}-{key}.{os.getpid()}{suffix}"
        start = time.monotonic()
        try:
            try:
                _download(url, dest)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue
                log(logger, f"remote cache: {url}: HTTP {exc.code} {exc.reason}; {kind}/{key}: {otherwise}")
                return False
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                log(logger, f"remote cache: {url} unreachable ({reason}); {kind}/{key}: {otherwise}")
                return False
            try:
                outcomes = read_archive(cache, dest, logger, accept=asked, fixup=fixup, source=url)
            except (CacheError, HostError, tarfile.TarError, lzma.LZMAError, EOFError, OSError) as exc:
                what = str(exc) if isinstance(exc, CacheError) else f"cache entry {kind}/{key} from {url}: {exc}"
                log(logger, f"remote cache: rejected {what}; {otherwise}", level=logging.WARNING)
                return False
            if cache.lookup(kind, key) is None:
                skipped = [o.status for o in outcomes if (o.kind, o.key) == (kind, key) and o.status.startswith("skip")]
                if skipped:
                    log(logger, f"remote cache: {kind}/{key} from {url} is of no use here ({skipped[0]}); {otherwise}")
                else:
                    log(logger, f"remote cache: {url} does not hold {kind}/{key}; {otherwise}")
                return False
            log(logger, f"remote cache: fetched {kind}/{key} from {url} in {time.monotonic() - start:.1f}s")
            return True
        finally:
            dest.unlink(missing_ok=True)
    log(logger, f"remote cache: {base} has no {kind}/{key}; {otherwise}")
    return False
