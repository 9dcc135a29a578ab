"""Kept disks record their bases; `cache gc` (even --all) keeps them; a rebuilt or missing base is a
LaunchError naming the fix (real qemu-img, no QEMU)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from vmtest.core import keptdisks
from vmtest.core.cache import Cache
from vmtest.core.errors import LaunchError

LOG = logging.getLogger("test")


def qcow2(path: Path, backing: Path | None = None) -> Path:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-F", "qcow2", "-b", str(backing)]
    subprocess.run([*argv, str(path), "64M"], check=True)
    return path


def image_builder(tmp: Path) -> dict[str, str]:
    qcow2(tmp / "root.qcow2")
    return {"kernel_key": "k"}


def test_backing_chain_reads_qcow2_headers(tmp_path: Path) -> None:
    base = qcow2(tmp_path / "base.qcow2")
    mid = qcow2(tmp_path / "mid.qcow2", base)
    top = qcow2(tmp_path / "top.qcow2", mid)
    assert keptdisks.backing_chain(top) == [mid, base]
    assert keptdisks.backing_chain(base) == []
    (tmp_path / "raw").write_bytes(b"not a qcow2")
    assert keptdisks.backing_chain(tmp_path / "raw") == []
    base.unlink()
    assert keptdisks.backing_chain(top) == [mid, base]  # the first missing one ends the chain


def test_gc_all_keeps_the_bases_of_kept_disks_until_the_disk_goes(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    kept_image = cache.build("images", "kept", image_builder, LOG)
    cache.build("images", "other", image_builder, LOG)
    cache.build("kernels", "k", lambda tmp: {}, LOG)
    cache.build("snapshots", "snap", lambda tmp: {"image_key": "kept"} | {"_": str(qcow2(tmp / "d.qcow2"))}, LOG)
    disk = qcow2(tmp_path / "root.qcow2", kept_image / "root.qcow2")  # a kept overlay outside the cache
    keptdisks.record(cache.refs, disk)

    removed = cache.gc(max_age_days=0, everything=True)

    assert sorted(removed) == ["images/other", "snapshots/snap"]
    assert sorted(e.key for e in cache.entries()) == ["k", "kept"]  # the image and its kernel stay
    disk.unlink()
    assert sorted(cache.gc(max_age_days=0, everything=True)) == ["images/kept", "kernels/k"]
    assert list(cache.refs.iterdir()) == []  # the dead reference went too


def test_a_kept_disk_on_a_snapshot_keeps_the_snapshot_and_its_image(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    image = cache.build("images", "img", image_builder, LOG)
    snap = cache.build("snapshots", "snap", lambda tmp: {"image_key": "img", "d": str(qcow2(tmp / "d.qcow2"))}, LOG)
    snap_disk = snap / "d.qcow2"
    # the snapshot's disk was made in tmp/ and renamed: recreate it on its image, as restore sees it
    snap_disk.unlink()
    qcow2(snap_disk, image / "root.qcow2")
    disk = qcow2(tmp_path / "root.qcow2", snap_disk)
    keptdisks.record(cache.refs, disk)
    cache.gc(max_age_days=0, everything=True)
    assert sorted(e.key for e in cache.entries()) == ["img", "snap"]


def test_check_names_a_rebuilt_or_missing_base(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    base = qcow2(tmp_path / "base.qcow2")
    disk = qcow2(tmp_path / "kept.qcow2", base)
    keptdisks.record(refs, disk)
    keptdisks.check(refs, disk, "server")  # unchanged: fine
    qcow2(base)  # rebuilt in place (new bytes, new mtime)
    os.utime(base, ns=(1, 1))
    with pytest.raises(LaunchError, match=r"server: opening its kept root disk failed: .*rebuilt.*rm .*kept.qcow2"):
        keptdisks.check(refs, disk, "server")
    base.unlink()
    with pytest.raises(LaunchError, match=r"which is gone.*VMTEST_CACHE_DIR.*rm .*kept.qcow2"):
        keptdisks.check(refs, disk, "server")
    keptdisks.check(None, qcow2(tmp_path / "plain.qcow2"), "server")  # no backing, no reference: fine
