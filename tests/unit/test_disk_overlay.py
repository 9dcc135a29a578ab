"""Root overlays are copies of one template per backing file and size (real qemu-img, no QEMU)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from vmtest.vm import disks

LOG = logging.getLogger("test")


def info(path: Path) -> dict[str, object]:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    base = tmp_path / "cache" / "root.qcow2"
    base.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    return base


def test_overlays_are_copies_of_one_template(tmp_path: Path, backing: Path) -> None:
    for i in range(2):
        disk = tmp_path / f"vm{i}" / "root.qcow2"
        disk.parent.mkdir()
        disks._overlay(backing, 128, disk, f"vm{i}", LOG)
        got = info(disk)
        assert got["virtual-size"] == 128 * 1024 * 1024
        assert got["backing-filename"] == str(backing)
        assert got["format"] == "qcow2"
    templates = sorted(p.name for p in backing.parent.iterdir() if p.name.startswith("overlay-"))
    assert len(templates) == 1 and templates[0].startswith("overlay-128M-")
    assert (tmp_path / "vm0/root.qcow2").read_bytes() == (tmp_path / "vm1/root.qcow2").read_bytes()
    disks._overlay(backing, 256, tmp_path / "big.qcow2", "big", LOG)  # another size, another template
    assert info(tmp_path / "big.qcow2")["virtual-size"] == 256 * 1024 * 1024
    assert len([p for p in backing.parent.iterdir() if p.name.startswith("overlay-")]) == 2


def test_an_unwritable_template_falls_back_to_a_direct_overlay(
    tmp_path: Path, backing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    disk = tmp_path / "root.qcow2"
    disks._overlay(backing, 128, disk, "vm", LOG)
    assert info(disk)["backing-filename"] == str(backing)
    assert [p.name for p in backing.parent.iterdir()] == ["root.qcow2"]  # no template, no temporary file
