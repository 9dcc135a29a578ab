"""The read-only remote cache: entries fetched from a local ``python -m http.server`` (127.0.0.1 only)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_cache_archive import (  # same directory (rootdir-relative imports)
    backing_file,
    fill,
    snapshot_over_image,
    tampered_archive,
)

from vmtest.core.archive import write_archive
from vmtest.core.cache import Cache
from vmtest.image import remote
from vmtest.vm.snapshot import import_policy

LOG = logging.getLogger("vmtest.test.remote")


@pytest.fixture
def source(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "source")
    fill(cache, "kernels", "k1", {"vmlinuz": b"kernel", "modules/x.ko": b"m" * 5000}, {"release": "6.1"})
    fill(cache, "images", "i1", {"root.qcow2": b"q" * 200_000}, {"kernel_key": "k1", "disk_mib": 1024})
    return cache


def test_a_missing_entry_is_fetched_and_verified(
    source: Cache, http_store: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, url = http_store
    (root / "images").mkdir()
    write_archive(source, [("images", "i1")], root / "images/i1.tar.xz", LOG)
    target = Cache(tmp_path / "target")
    with caplog.at_level(logging.INFO):
        assert remote.fetch(target, url, "images", "i1", LOG)
    assert (target.path("images", "i1") / "root.qcow2").read_bytes() == b"q" * 200_000
    assert "fetched images/i1" in caplog.text
    assert not [p for p in (target.root / "tmp").iterdir() if p.name.startswith("download-")]


def test_an_entry_the_server_lacks_is_built_locally(http_store: tuple[Path, str], tmp_path: Path) -> None:
    _, url = http_store
    target = Cache(tmp_path / "target")
    assert not remote.fetch(target, url, "images", "nope", LOG)
    assert target.lookup("images", "nope") is None


def test_a_corrupt_entry_on_the_server_is_rejected_with_the_reason(
    source: Cache, http_store: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, url = http_store
    (root / "kernels").mkdir()
    tampered_archive(source, root / "kernels/k1.tar.xz", "kernels", "k1", "modules/x.ko")
    target = Cache(tmp_path / "target")
    with caplog.at_level(logging.INFO):
        assert not remote.fetch(target, url, "kernels", "k1", LOG)
    assert re.search(
        r"remote cache: rejected cache entry kernels/k1 from http://127\.0\.0\.1:\d+/store/kernels/k1\.tar\.xz: "
        r"modules/x\.ko does not match the manifest.*building it locally",
        caplog.text,
    )
    assert target.lookup("kernels", "k1") is None
    assert not target.path("kernels", "k1").exists()


def test_an_unreachable_server_means_a_local_build(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert not remote.fetch(Cache(tmp_path / "t"), "http://127.0.0.1:9", "images", "i1", LOG)
    assert "unreachable" in caplog.text


def test_a_snapshot_is_fetched_only_when_this_qemu_made_it_and_is_backed_by_this_caches_image(
    http_store: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = Cache(tmp_path / "source")
    snapshot_over_image(source, "QEMU A", state=b"migration")
    root, url = http_store
    (root / "snapshots").mkdir()
    write_archive(source, [("snapshots", "s1")], root / "snapshots/s1.tar.xz", LOG)
    target = Cache(tmp_path / "target")
    fill(target, "images", "i1", {}, {"kernel_key": "k1"})  # this cache's copy of the image

    cold = "booting cold (and saving it here)"
    with caplog.at_level(logging.INFO):
        assert not remote.fetch(target, url, "snapshots", "s1", LOG, *import_policy(target, "QEMU B", LOG), cold)
    assert "snapshots/s1 from" in caplog.text
    assert "is of no use here (skipped: made by QEMU A, this host has QEMU B); booting cold" in caplog.text
    assert target.lookup("snapshots", "s1") is None

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert remote.fetch(target, url, "snapshots", "s1", LOG, *import_policy(target, "QEMU A", LOG), cold)
    assert "fetched snapshots/s1" in caplog.text
    assert backing_file(target, "s1") == str(target.path("images", "i1") / "root.qcow2")
