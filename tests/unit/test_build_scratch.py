"""Where an image build makes its directory tree: in memory (a tmpfs) when the host has room, else on disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vmtest.core import statedirs
from vmtest.image import scratch

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run tmpfs rw 0 0
/dev/vdb /srv/my\\040disk xfs rw 0 0
"""


def test_the_file_system_of_a_path_is_that_of_the_longest_mount_point_above_it() -> None:
    assert scratch.fs_type(Path("/dev/shm"), MOUNTS) == "tmpfs"
    assert scratch.fs_type(Path("/dev/shm/vmtest-build-x/root"), MOUNTS) == "tmpfs"
    assert scratch.fs_type(Path("/dev/shmem"), MOUNTS) == "ext4"  # a prefix of the name is not a parent
    assert scratch.fs_type(Path("/srv/my disk/a"), MOUNTS) == "xfs"
    assert scratch.fs_type(Path("/var/tmp"), MOUNTS) == "ext4"


def test_a_tree_stays_on_disk_when_the_place_is_no_tmpfs_or_too_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = tmp_path / "work" / "root"
    fallback.parent.mkdir()
    # the place is on disk whatever file system tmp_path is on here (a host may mount /tmp as a tmpfs)
    monkeypatch.setattr(scratch, "fs_type", lambda path, mounts=None: "ext4")
    with scratch.tree_dir(fallback, "images-k", shm=tmp_path) as tree:
        assert tree == fallback
        tree.mkdir()
        (tree / "file").write_text("x")
    assert not fallback.exists()
    assert not scratch.in_memory(Path("/dev/shm"), needed_mib=1 << 40)  # a petabyte: never free


@pytest.mark.skipif(not scratch.in_memory(), reason="this host has no tmpfs /dev/shm with 2 GiB free")
def test_a_tree_in_memory_names_its_owner_and_goes_away() -> None:
    with scratch.tree_dir(Path("/nonexistent/fallback"), "images-abc") as tree:
        assert tree.parent.parent == Path("/dev/shm")
        assert tree.parent.name.startswith("vmtest-build-images-abc.")
        owner = json.loads((tree.parent / statedirs.OWNER_FILE).read_text())
        assert owner["pid"] == statedirs.Owner.me().pid
        tree.mkdir()
        (tree / "etc").mkdir()
    assert not tree.parent.exists()


def test_the_sweep_removes_build_trees_whose_owner_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    tmp.mkdir()
    monkeypatch.setattr(statedirs, "BUILD_TREE_PARENT", shm)
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    dead = shm / "vmtest-build-images-k.1"
    live = shm / "vmtest-build-images-j.2"
    for d in (dead, live):
        (d / "root" / "etc").mkdir(parents=True)
    statedirs.mark(live)
    (dead / statedirs.OWNER_FILE).write_text(json.dumps({"pid": 2**22 + 7, "start": 1}) + "\n")  # no such pid
    count, _ = statedirs.sweep(logging.getLogger("test"))
    assert count == 1
    assert not dead.exists() and live.exists()


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    from vmtest.core import meminfo

    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24683784 kB\nMemFree:         1000 kB\nMemAvailable:   20971520 kB\n")
    assert meminfo.available_mib(info) == 20480
    info.write_text("MemTotal:       24683784 kB\n")  # an old kernel without the field
    assert meminfo.available_mib(info) is None
    assert meminfo.available_mib(tmp_path / "missing") is None
