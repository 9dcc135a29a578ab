"""What vmtest adds to every image (the overlay copied over the guest's /), without building one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.core.contract import CRITICAL_NICE, MODULES_LABEL, SETUP_UNIT, XCHG_MOUNT_UNIT
from vmtest.image import kernel
from vmtest.image.rootfs import (
    AFTER_BACKDOOR_NICE,
    AFTER_BACKDOOR_UNITS,
    BLACKLISTED_MODULES,
    MASKED_GENERATORS,
    MASKED_UNITS,
    mount_unit_name,
    place_modules,
    stage_overlay,
)

LOGGER = logging.getLogger("test")


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
    # systemd orders queued jobs of one type by CPU weight, then nice value, then name: without it,
    # vmtest-setup and the backdoor would start after every systemd-* service of the early boot
    stage_overlay(MachineConfig(), tmp_path)
    units = tmp_path / "etc/systemd/system"
    assert CRITICAL_NICE < 0
    for unit in (SETUP_UNIT, "vmtest-backdoor.service"):
        text = (units / unit).read_text()
        assert f"\nNice={CRITICAL_NICE}\n" in text
        assert "CPUWeight=" not in text  # it turns on the cpu controller: udev fell behind the tests


def test_early_units_no_first_command_needs_wait_for_the_backdoor(tmp_path: Path) -> None:
    """The exchange directory and the API file systems other than /dev, /proc, /sys and /run are mounted once
    the backdoor has started, not before it (each is a fork of PID 1 and an exec under TCG)."""
    stage_overlay(MachineConfig(), tmp_path)
    units = tmp_path / "etc/systemd/system"
    xchg = (units / XCHG_MOUNT_UNIT).read_text()
    assert "\nAfter=vmtest-backdoor.service\n" in xchg and "Nice=" not in xchg
    assert {"sys-kernel-debug.mount", "sys-kernel-config.mount", "modprobe@configfs.service"} <= set(
        AFTER_BACKDOOR_UNITS
    )
    for unit in AFTER_BACKDOOR_UNITS:
        drop_in = (units / f"{unit}.d" / "vmtest-after-backdoor.conf").read_text()
        assert drop_in.startswith("[Unit]\n") and "\nAfter=vmtest-backdoor.service\n" in drop_in
        # at the lowest priority, in the section of the unit's type (systemd ignores Nice= elsewhere)
        section = "[Mount]" if unit.endswith(".mount") else "[Service]"
        assert f"\n{section}\nNice={AFTER_BACKDOOR_NICE}\n" in drop_in and AFTER_BACKDOOR_NICE == 19
    # nothing the backdoor waits for is among them (an ordering cycle: systemd would drop a job)
    backdoor = (units / "vmtest-backdoor.service").read_text()
    setup = (units / SETUP_UNIT).read_text()
    assert not any(unit in backdoor or unit in setup for unit in (*AFTER_BACKDOOR_UNITS, XCHG_MOUNT_UNIT))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mkfs.ext4", "qemu-img", "debugfs", "depmod")),
    reason="needs e2fsprogs, qemu-utils and kmod",
)


@needs_tools
def test_the_module_disk_holds_the_tree_and_gives_it_back(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", {"kernel/drivers/a.ko": "module a", "modules.dep": "kernel/drivers/a.ko:\n"})
    disk = tmp_path / "modules.qcow2"
    kernel.module_disk(tree, disk, tmp_path / "scratch.ext4", LOGGER)
    assert not (tmp_path / "scratch.ext4").exists()
    info = subprocess.run(["qemu-img", "info", "--output=json", disk], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["format"] == "qcow2"
    out = tmp_path / "out"
    kernel.extract_modules(disk, out, tmp_path / "scratch.raw", LOGGER)
    assert (out / "kernel/drivers/a.ko").read_text() == "module a"
    assert (out / "modules.dep").read_text() == "kernel/drivers/a.ko:\n"
    assert not (tmp_path / "scratch.raw").exists()


def test_stage1_looks_for_the_module_disk_by_its_label() -> None:
    init = (Path(kernel.__file__).parent / "guest" / "init").read_text()
    assert f"findfs LABEL={MODULES_LABEL} " in init


@needs_tools
def test_an_image_gets_an_empty_mount_point_unless_its_packages_put_modules_there(tmp_path: Path) -> None:
    modules = _tree(tmp_path / "tree", {"kernel/drivers/a.ko": "module a", "modules.dep": "kernel/drivers/a.ko:\n"})
    disk = tmp_path / "modules.qcow2"
    kernel.module_disk(modules, disk, tmp_path / "scratch.ext4", LOGGER)
    k = kernel.Kernel(kernel.KernelSpec("linux-image-x", "1"), "6.1.0-x", Path("/vmlinuz"), Path("/initrd"), disk)
    plain = tmp_path / "plain"
    place_modules(plain, k, tmp_path, LOGGER)
    assert list((plain / "lib/modules/6.1.0-x").iterdir()) == []  # stage 1 mounts the disk here
    # ... and it is unmounted last, by systemd-shutdown, not in the ordered shutdown (udevd holds it open)
    drop_in = plain / "etc/systemd/system/usr-lib-modules-6.1.0\\x2dx.mount.d/vmtest.conf"
    assert "DefaultDependencies=no" in drop_in.read_text().splitlines()
    extra = _tree(tmp_path / "extra", {"lib/modules/6.1.0-x/updates/b.ko": "module b"})
    place_modules(extra, k, tmp_path, LOGGER)
    mods = extra / "lib/modules/6.1.0-x"
    assert (mods / "updates/b.ko").read_text() == "module b"  # the package's own, kept
    assert (mods / "kernel/drivers/a.ko").read_text() == "module a"  # the kernel's, copied beside it
    assert not (mods / "lost+found").exists()
    assert (mods / "modules.dep").exists()  # depmod indexed them


def test_the_kernel_key_follows_the_stage1_module_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmtest.core import contract
    from vmtest.image import kernel

    spec = kernel.KernelSpec("linux-image-6.1.0-56-amd64", "6.1.192-2")
    before = spec.key
    changed = {**contract.STAGE1_MODULE_GROUPS, "ide": ("ata_piix", "sd_mod")}
    monkeypatch.setattr(kernel, "STAGE1_MODULE_GROUPS", changed)
    assert spec.key != before  # a changed group list builds a new initrd, not a stale cached one


def test_mount_unit_names_are_systemd_escape_s() -> None:
    # as `systemd-escape --path --suffix=mount` prints them
    assert mount_unit_name("/usr/lib/modules/6.1.0-28-amd64") == "usr-lib-modules-6.1.0\\x2d28\\x2damd64.mount"
    assert mount_unit_name("/tmp/.x y/") == "tmp-.x\\x20y.mount"
    assert mount_unit_name("/.a/b") == "\\x2ea-b.mount"


def test_sd_mod_is_loaded_before_the_ide_host_driver() -> None:
    from vmtest.core.contract import STAGE1_MODULE_GROUPS

    ide = STAGE1_MODULE_GROUPS["ide"]
    assert ide.index("sd_mod") < ide.index("ata_piix")
