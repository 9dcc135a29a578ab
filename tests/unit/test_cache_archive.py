"""``vmtest cache export/import``: archives of cache entries, verified and installed one complete entry at a time."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from vmtest.core.archive import MANIFEST, describe_entry, read_archive, write_archive
from vmtest.core.cache import Cache
from vmtest.core.errors import CacheError
from vmtest.vm.snapshot import import_policy

LOG = logging.getLogger("vmtest.test.archive")


def fill(cache: Cache, kind: str, key: str, files: dict[str, bytes], meta: dict[str, Any]) -> None:
    def builder(tmp: Path) -> dict[str, Any]:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        return meta

    cache.build(kind, key, builder, LOG)


@pytest.fixture
def source(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "source")
    fill(cache, "kernels", "k1", {"vmlinuz": b"kernel", "modules/a/b.ko": b"module" * 1000}, {"release": "6.1"})
    os.symlink("b.ko", cache.path("kernels", "k1") / "modules/a/link.ko")
    fill(cache, "images", "i1", {"root.qcow2": os.urandom(300_000)}, {"kernel_key": "k1", "disk_mib": 1024})
    # an overlay template names its backing file by path: it never travels
    (cache.path("images", "i1") / "overlay-2048M-abcd1234.qcow2").write_bytes(b"template")
    fill(
        cache,
        "snapshots",
        "s1",
        {"state": b"migration", "console.log": b"boot\n"},
        {"image_key": "i1", "qemu": "A", "machine": "m"},
    )
    return cache


@pytest.mark.parametrize("name", ["cache.tar.xz", "cache.tar.zst"])
def test_round_trip_installs_every_entry_with_its_files_and_meta(source: Cache, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    entries = [("kernels", "k1"), ("images", "i1"), ("snapshots", "s1")]
    write_archive(source, entries, out, LOG)
    target = Cache(tmp_path / "target")
    outcomes = read_archive(target, out, LOG)
    assert [(o.kind, o.key, o.status) for o in outcomes] == [(k, key, "installed") for k, key in entries]
    for kind, key in entries:
        for rel in ("vmlinuz", "modules/a/b.ko", "root.qcow2", "state", "console.log"):
            if (source.path(kind, key) / rel).exists():
                assert (target.path(kind, key) / rel).read_bytes() == (source.path(kind, key) / rel).read_bytes()
    assert os.readlink(target.path("kernels", "k1") / "modules/a/link.ko") == "b.ko"
    assert not list(target.path("images", "i1").glob("overlay-*"))
    assert json.loads((target.path("images", "i1") / "meta.json").read_text())["kernel_key"] == "k1"
    assert not list((target.root / "tmp").iterdir())
    # a second import finds every entry present and changes nothing
    again = read_archive(target, out, LOG)
    assert {o.status for o in again} == {"present"}


def tampered_archive(source: Cache, out: Path, kind: str, key: str, bad_file: str) -> None:
    """An archive whose manifest is right but one file's bytes are not (a corrupt transfer)."""
    record = describe_entry(source, kind, key)
    with tarfile.open(out, "w:xz") as tar:
        blob = json.dumps({"format": 1, "entries": [record]}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        for f in record["files"]:
            data = (source.path(kind, key) / f["path"]).read_bytes()
            if f["path"] == bad_file:
                data = bytes([data[0] ^ 1]) + data[1:]
            info = tarfile.TarInfo(f"{kind}/{key}/{f['path']}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_corrupt_file_installs_nothing_of_its_entry(source: Cache, tmp_path: Path) -> None:
    out = tmp_path / "bad.tar.xz"
    tampered_archive(source, out, "kernels", "k1", "modules/a/b.ko")
    target = Cache(tmp_path / "target")
    with pytest.raises(CacheError, match=r"kernels/k1 .*modules/a/b.ko does not match the manifest"):
        read_archive(target, out, LOG)
    assert target.lookup("kernels", "k1") is None
    assert not target.path("kernels", "k1").exists()
    assert not list((target.root / "tmp").iterdir())


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar.xz"
    bogus.write_bytes(b"hello")
    with pytest.raises(CacheError, match="not a vmtest cache archive"):
        read_archive(Cache(tmp_path / "c"), bogus, LOG)


def test_another_qemu_keeps_images_and_skips_snapshots(source: Cache, tmp_path: Path) -> None:
    out = tmp_path / "cache.tar.xz"
    write_archive(source, [("kernels", "k1"), ("images", "i1"), ("snapshots", "s1")], out, LOG)
    target = Cache(tmp_path / "target")
    accept, fixup = import_policy(target, "B", LOG)  # the snapshot was made by QEMU "A"
    outcomes = read_archive(target, out, LOG, accept, fixup)
    status = {o.kind: o.status for o in outcomes}
    assert status["kernels"] == status["images"] == "installed"
    assert status["snapshots"] == "skipped: made by A, this host has B"
    assert target.lookup("snapshots", "s1") is None
    assert target.lookup("images", "i1") is not None


def snapshot_over_image(cache: Cache, qemu: str, state: bytes = b"m") -> None:
    """Image i1 (a real, empty qcow2) and snapshot s1 made by ``qemu``, its disk a qcow2 overlay on i1."""
    fill(cache, "images", "i1", {}, {"kernel_key": "k1"})
    base = cache.path("images", "i1") / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    fill(cache, "snapshots", "s1", {"state": state}, {"image_key": "i1", "qemu": qemu})
    disk = cache.path("snapshots", "s1") / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk)], check=True)


def backing_file(cache: Cache, key: str) -> str:
    """The backing file snapshot ``key``'s disk names."""
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(cache.path("snapshots", key) / "disk.qcow2")],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(info.stdout)["backing-filename"])


def test_an_imported_snapshot_disk_is_backed_by_this_caches_image(tmp_path: Path) -> None:
    source = Cache(tmp_path / "source")
    snapshot_over_image(source, "A")
    out = tmp_path / "a.tar.xz"
    write_archive(source, [("images", "i1"), ("snapshots", "s1")], out, LOG)
    target = Cache(tmp_path / "target")
    accept, fixup = import_policy(target, "A", LOG)
    assert {o.status for o in read_archive(target, out, LOG, accept, fixup)} == {"installed"}
    assert backing_file(target, "s1") == str(target.path("images", "i1") / "root.qcow2")


def test_export_to_a_directory_writes_one_archive_per_entry(
    source: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vmtest cache export -o DIR/``: the remote-cache layout DIR/KIND/KEY.tar.zst, kernel and snapshot
    included (``--no-snapshots``: left out); a file name gets one archive with all of them."""
    from vmtest import MachineConfig
    from vmtest.cli import cachecmd
    from vmtest.cli.main import main
    from vmtest.image.selection import ImageNeed

    monkeypatch.setattr(cachecmd, "selection", lambda args, settings: [ImageNeed("i1", MachineConfig(), ["t::m"])])
    # a snapshot of another machine on the same image: no selected test can restore it, it stays home
    fill(source, "snapshots", "s2", {"state": b"other"}, {"image_key": "i1", "qemu": "A", "machine": "other"})
    out = tmp_path / "served"
    assert main(["--cache-dir", str(source.root), "cache", "export", "tests", "-o", f"{out}/"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.tar.*")) == [
        "images/i1.tar.zst",
        "kernels/k1.tar.zst",
        "snapshots/s1.tar.zst",
    ]
    bare = tmp_path / "served-without-snapshots"
    assert main(["--cache-dir", str(source.root), "cache", "export", "tests", "--no-snapshots", "-o", f"{bare}/"]) == 0
    without = sorted(str(p.relative_to(bare)) for p in bare.rglob("*.tar.*"))
    assert without == ["images/i1.tar.zst", "kernels/k1.tar.zst"]
    single = tmp_path / "all.tar.xz"
    assert main(["--cache-dir", str(source.root), "cache", "export", "tests", "-o", str(single)]) == 0
    target = Cache(tmp_path / "target")
    installed = read_archive(target, single, LOG)
    assert [(o.kind, o.key) for o in installed] == [("kernels", "k1"), ("images", "i1"), ("snapshots", "s1")]


def test_export_takes_the_snapshots_the_selected_tests_last_used(source: Cache) -> None:
    """With the plugin's record of which snapshot each test's machine restored or saved, an export takes those
    and leaves out older snapshots of the same machine (another config, another vmtest); a machine none of
    whose selected tests has a record gets every snapshot of its name on its image."""
    from vmtest import MachineConfig
    from vmtest.cli.cachecmd import used_snapshots
    from vmtest.image.selection import ImageNeed

    for key, machine in (("s1-older", "m"), ("n1", "n"), ("n1-older", "n")):
        fill(source, "snapshots", key, {"state": b"x"}, {"image_key": "i1", "qemu": "A", "machine": machine})
    fill(source, "snapshots", "m-on-i2", {"state": b"x"}, {"image_key": "i2", "qemu": "A", "machine": "m"})
    needs = [ImageNeed("i1", MachineConfig(), ["a.py::t1::m", "a.py::t2::m", "b.py::t::n"])]
    assert sorted(used_snapshots(source, needs)) == ["n1", "n1-older", "s1", "s1-older"]  # nothing recorded yet

    source.record_snapshot_users({"a.py::t1::m": "s1", "gone.py::t::m": "deleted-since"})
    assert source.snapshot_users() == {"a.py::t1::m": "s1"}  # (records of snapshots no longer here: dropped)
    assert sorted(used_snapshots(source, needs)) == ["n1", "n1-older", "s1"]
    source.record_snapshot_users({"b.py::t::n": "n1"})
    assert sorted(used_snapshots(source, needs)) == ["n1", "s1"]
    # a record of a snapshot on another image than the test's (its config changed since): not taken
    source.record_snapshot_users({"a.py::t1::m": "m-on-i2"})
    assert sorted(used_snapshots(source, needs)) == ["n1"]
