"""What vmtest adds to every image (the overlay copied over the guest's /), without building one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.core.contract import CRITICAL_NICE, SETUP_UNIT, XCHG_MOUNT_UNIT
from vmtest.image.rootfs import BLACKLISTED_MODULES, MASKED_GENERATORS, MASKED_UNITS, stage_overlay


def test_masked_units_and_generators_are_links_to_dev_null(tmp_path: Path) -> None:
    stage_overlay(MachineConfig(), tmp_path)
    for unit in MASKED_UNITS:
        assert os.readlink(tmp_path / "etc/systemd/system" / unit) == "/dev/null"
    for generator in MASKED_GENERATORS:
        assert os.readlink(tmp_path / "etc/systemd/system-generators" / generator) == "/dev/null"
    # what tests rely on stays: fstab, rc.local, SysV scripts, kernel-command-line units, tty gettys
    kept = {
        "systemd-fstab-generator",
        "systemd-rc-local-generator",
        "systemd-sysv-generator",
        "systemd-debug-generator",
    }
    assert not kept & set(MASKED_GENERATORS)
    assert not {"getty@tty1.service", "getty-static.service", "systemd-journald.service"} & set(MASKED_UNITS)


def test_module_blacklist_stops_only_automatic_loading(tmp_path: Path) -> None:
    stage_overlay(MachineConfig(), tmp_path)
    conf = (tmp_path / "etc/modprobe.d/vmtest.conf").read_text().splitlines()
    assert [line for line in conf if not line.startswith("#")] == [f"blacklist {m}" for m in BLACKLISTED_MODULES]
    assert "floppy" in BLACKLISTED_MODULES


def test_the_units_before_the_backdoor_are_dispatched_first(tmp_path: Path) -> None:
    # systemd orders queued jobs of one type by nice value, then by name: without it, vmtest-setup
    # would start after every systemd-* service of the early boot
    stage_overlay(MachineConfig(), tmp_path)
    setup = (tmp_path / "etc/systemd/system" / SETUP_UNIT).read_text()
    mount = (tmp_path / "etc/systemd/system" / XCHG_MOUNT_UNIT).read_text()
    assert CRITICAL_NICE < 0
    assert f"\nNice={CRITICAL_NICE}\n" in setup
    assert f"\nNice={CRITICAL_NICE}\n" in mount


def test_the_kernel_key_follows_the_stage1_module_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmtest.core import contract
    from vmtest.image import kernel

    spec = kernel.KernelSpec("linux-image-6.1.0-56-amd64", "6.1.192-2")
    before = spec.key
    changed = {**contract.STAGE1_MODULE_GROUPS, "ide": ("ata_piix", "sd_mod")}
    monkeypatch.setattr(kernel, "STAGE1_MODULE_GROUPS", changed)
    assert spec.key != before  # a changed group list builds a new initrd, not a stale cached one


def test_sd_mod_is_loaded_before_the_ide_host_driver() -> None:
    from vmtest.core.contract import STAGE1_MODULE_GROUPS

    ide = STAGE1_MODULE_GROUPS["ide"]
    assert ide.index("sd_mod") < ide.index("ata_piix")
