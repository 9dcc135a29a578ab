"""The boot-loader options (defaults as the seed, errors for what cannot work) and the pure parts of the
bootable disk: QEMU's argv, the partition table, GRUB's files and boot sectors, the guest's /boot mount."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.config.virtualisation import Virtualisation
from vmtest.core.errors import ConfigError
from vmtest.image import grubfiles
from vmtest.image.bootdisk import (
    BootDiskSpec,
    bootdisk_key,
    build_of,
    debugfs_commands,
    disk_build_id,
    ext4_uuid,
    image_build,
    spec_for,
)
from vmtest.vm.argv import Boot, kernel_params, machine_argv
from vmtest.vm.guestsetup import script
from vmtest.vm.paths import MachinePaths
from vmtest.vm.snapshot import ineligible

BOOT = Boot(kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd"), image=Path("/c/bootdisks/x/disk.qcow2"))
PATHS = MachinePaths(Path("/run/vmtest/m1"))
LOADER = {"use_boot_loader": True}


def test_defaults_follow_the_seed() -> None:
    plain = Virtualisation()
    assert (plain.use_boot_loader, plain.direct_boot, plain.install_boot_loader) == (False, True, False)
    assert plain.boot_partition is None and plain.boot_loader_device == "/dev/disk/by-id/virtio-root"
    v = Virtualisation(use_boot_loader=True)
    assert (v.direct_boot, v.install_boot_loader, v.boot_partition, v.boots_from_disk) == (False, True, None, True)
    assert Virtualisation(use_boot_loader=True, use_bios_boot=True).boot_partition == "/dev/disk/by-label/BOOT"
    assert Virtualisation(use_boot_loader=True, boot_partition=None, use_bios_boot=True).boot_partition is None
    # no root disk of vmtest's: nothing to install on, the firmware boots the user's drives
    own = Virtualisation(use_boot_loader=True, use_default_filesystems=False)
    assert own.install_boot_loader is False and not own.boots_from_disk


def test_install_boot_loader_default_and_errors() -> None:
    assert Virtualisation(use_boot_loader=True, install_boot_loader=False).install_boot_loader is False
    with pytest.raises(ConfigError, match="install_boot_loader.*set use_boot_loader=True too"):
        Virtualisation(install_boot_loader=True)
    with pytest.raises(ConfigError, match="no root disk to install a boot loader on"):
        Virtualisation(use_boot_loader=True, install_boot_loader=True, use_default_filesystems=False)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"use_bios_boot": True}, "use_bios_boot.*only made on the bootable disk"),
        ({"boot_partition": "/dev/vda2"}, "boot_partition.*only mounted from a boot partition with use_boot_loader"),
        ({"direct_boot": False}, "direct_boot.*image has no boot loader"),
        ({"use_boot_loader": True, "boot_partition": "vda2"}, "boot_partition.*absolute guest path"),
        ({"use_boot_loader": True, "boot_loader_device": "sda"}, "boot_loader_device.*absolute guest path"),
    ],
)
def test_bad_combinations_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Virtualisation(**options)


def test_boot_loader_timeout_needs_a_boot_menu() -> None:
    assert MachineConfig(virtualisation=LOADER, boot_loader_timeout=30).boot_loader_timeout == 30
    with pytest.raises(ConfigError, match="boot_loader_timeout.*only a machine that boots through GRUB"):
        MachineConfig(boot_loader_timeout=5)
    with pytest.raises(ConfigError, match="boot_loader_timeout"):
        MachineConfig(virtualisation=LOADER, boot_loader_timeout=-1)
    # boot time only: not an image input
    assert MachineConfig(virtualisation=LOADER, boot_loader_timeout=9).image_inputs() == MachineConfig().image_inputs()


def test_argv_boots_the_disk_through_firmware_with_the_command_line_as_an_smbios_string() -> None:
    config = MachineConfig(
        virtualisation={**LOADER, "qemu": {"options": ["-smbios type=11,value=mine"]}}, boot_loader_timeout=7
    )
    argv = machine_argv("m1", config, BOOT, PATHS, "tcg")
    assert "-kernel" not in argv and "-initrd" not in argv and "-append" not in argv
    params = " ".join(kernel_params(config, "tcg"))
    # last, after qemu.options: GRUB reads the last OEM string; commas doubled for QEMU
    assert argv[-4:] == ["-smbios", "type=11,value=mine", "-smbios", "type=11,value=7 " + params.replace(",", ",,")]
    assert "serial=root,bootindex=1" in " ".join(argv)
    direct = machine_argv("m1", MachineConfig(), BOOT, PATHS, "tcg")
    assert "-kernel" in direct and "-smbios" not in direct


def test_bootable_disk_spec_per_boot_mode() -> None:
    assert spec_for(Virtualisation()) is None
    with pytest.warns(UserWarning, match="never runs the boot loader"):
        assert spec_for(Virtualisation(use_boot_loader=True, direct_boot=True)) is None
    assert spec_for(Virtualisation(use_boot_loader=True)) == BootDiskSpec("ESP", False, True)
    assert spec_for(Virtualisation(use_boot_loader=True, use_bios_boot=True)) == BootDiskSpec("BOOT", True, True)
    assert spec_for(Virtualisation(use_boot_loader=True, install_boot_loader=False)) == BootDiskSpec(
        "ESP", False, False
    )


def test_bootdisk_key_changes_with_what_shapes_the_disk() -> None:
    base = bootdisk_key("img", "b1", BootDiskSpec(), {"grub-pc-bin": "2.06"})
    assert base == bootdisk_key("img", "b1", BootDiskSpec(), {"grub-pc-bin": "2.06"})
    others = {
        bootdisk_key("img2", "b1", BootDiskSpec(), {"grub-pc-bin": "2.06"}),
        bootdisk_key("img", "b2", BootDiskSpec(), {"grub-pc-bin": "2.06"}),  # the image was rebuilt
        bootdisk_key("img", "b1", BootDiskSpec("BOOT", True), {"grub-pc-bin": "2.06"}),
        bootdisk_key("img", "b1", BootDiskSpec(install=False), {"grub-pc-bin": "2.06"}),
        bootdisk_key("img", "b1", BootDiskSpec(), {"grub-pc-bin": "2.07"}),
    }
    assert base not in others and len(others) == 5


def test_an_images_build_is_its_build_id_else_its_created_stamp(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"created": 1700000000.5, "build_id": "0123abcd"}))
    assert image_build(tmp_path / "root.qcow2") == "0123abcd"  # an import resets created, not the id
    (tmp_path / "meta.json").write_text(json.dumps({"created": 1700000000.5}))
    assert image_build(tmp_path / "root.qcow2") == "1700000000.5"
    # the snapshots' reader of the same meta: no stamp fallback (their keys stayed as they were for old images)
    assert build_of({"created": 1700000000.5}, stamp=False) == ""
    assert build_of({"created": 1700000000.5, "build_id": "0123abcd"}, stamp=False) == "0123abcd"


def test_layout_and_sfdisk_script(tmp_path: Path) -> None:
    disk = grubfiles.layout(1024)
    assert [(p.start_mib, p.size_mib) for p in (disk.bios, disk.esp, disk.root)] == [(1, 1), (2, 128), (130, 1024)]
    assert disk.total_mib == 1155 and disk.root.offset == 130 << 20
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as fh:
        fh.truncate(disk.total_mib << 20)
    subprocess.run(["sfdisk", "-q", str(raw)], input=grubfiles.sfdisk_script(disk), text=True, check=True)
    dump = subprocess.run(["sfdisk", "-d", str(raw)], capture_output=True, text=True, check=True).stdout
    assert f"start=        2048, size=        2048, type={grubfiles.BIOS_BOOT_TYPE}" in dump
    assert f"start=      266240, size=     2097152, type={grubfiles.LINUX_TYPE}" in dump
    assert 'name="ESP"' in dump


def test_grub_cfg_reads_the_machine_string_and_has_two_entries() -> None:
    files = grubfiles.BootFiles("6.1.0-1-amd64", "1234", "/boot")
    cfg = grubfiles.grub_cfg(files)
    assert "smbios --type 11 --get-string 4 --set vmtest_machine" in cfg
    assert "search --no-floppy --fs-uuid --set=root 1234" in cfg
    assert "  linux /boot/vmlinuz-6.1.0-1-amd64 $vmtest_cmdline\n" in cfg
    assert "  linux /boot/vmlinuz-6.1.0-1-amd64 $vmtest_cmdline single\n" in cfg
    assert cfg.count("menuentry ") == 2 and "(recovery mode)" in cfg
    assert grubfiles.core_cfg(files) == "search.fs_uuid 1234 root\nset prefix=($root)/boot/grub\n"
    on_fat = grubfiles.BootFiles("r", "7E57-B007", "")
    assert on_fat.kernel == "/vmlinuz-r" and on_fat.grub_dir == "/grub"
    assert grubfiles.efi_stub_cfg("7E57-B007", "/grub").endswith("configfile ($root)/grub/grub.cfg\n")
    assert grubfiles.machine_string(3, ["a=1", "b"]) == "3 a=1 b"


def test_boot_sector_keeps_the_partition_table_and_points_at_core() -> None:
    boot_img = bytes(range(256)) * 2
    first = bytearray(512)
    first[0x1B8:0x1FE] = b"\xaa" * (0x1FE - 0x1B8)
    out = grubfiles.boot_sector(boot_img, bytes(first), 2048)
    assert len(out) == 512
    assert out[0x1B8:0x1FE] == b"\xaa" * (0x1FE - 0x1B8)
    assert struct.unpack("<Q", out[0x5C:0x64])[0] == 2048 and out[0x64] == 0xFF
    assert out[0x66:0x68] == b"\x90\x90" and out[:3] == boot_img[:3] and out[0x3:0x5A] == bytes(0x57)
    with pytest.raises(ValueError):
        grubfiles.boot_sector(b"x", bytes(first), 1)


def test_core_image_blocklist_covers_the_rest_of_core() -> None:
    core = grubfiles.core_image(b"\x01" * 1000, 2048)
    assert len(core) == 1024
    assert struct.unpack("<QHH", core[500:512]) == (2049, 1, 0x820)
    assert core[488:500] == bytes(12)
    with pytest.raises(ValueError, match="does not fit"):
        grubfiles.core_image(bytes(2 << 20), 2048)


def test_ext4_uuid_and_debugfs_commands() -> None:
    sb = bytearray(1024)
    sb[0x38:0x3A] = b"\x53\xef"
    sb[0x68:0x78] = bytes(range(16))
    assert ext4_uuid(bytes(sb)) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    files = grubfiles.BootFiles("r", "u", "/boot")
    cmds = debugfs_commands(files, Path("/k/vmlinuz"), Path("/k/initrd"), Path("/t/g.cfg"), [Path("/g/normal.mod")])
    assert "write /k/vmlinuz /boot/vmlinuz-r\n" in cmds and "rm /boot/vmlinuz-r\n" in cmds
    assert cmds.endswith("mkdir /boot/grub/i386-pc\nwrite /g/normal.mod /boot/grub/i386-pc/normal.mod\n")


def test_guest_setup_mounts_the_boot_partition_by_label_and_names_the_boot_loader_device() -> None:
    text = script(MachineConfig(virtualisation={**LOADER, "use_bios_boot": True}), "m1")
    assert "mount -t vfat LABEL=BOOT /boot ||" in text
    assert "echo /dev/disk/by-id/virtio-root > /etc/vmtest/boot-loader-device" in text
    assert "/boot" not in script(MachineConfig(), "m1")
    assert "mount" not in script(MachineConfig(virtualisation=LOADER), "m1")


def test_boot_loader_machines_start_from_a_snapshot_unless_they_show_the_menu_or_have_no_boot_loader() -> None:
    assert ineligible("m1", MachineConfig(virtualisation=LOADER), PATHS) is None
    assert ineligible("m1", MachineConfig(virtualisation={**LOADER, "use_efi_boot": True}), PATHS) is None
    why = ineligible("m1", MachineConfig(virtualisation=LOADER, boot_loader_timeout=5), PATHS)
    assert why is not None and "boot_loader_timeout" in why
    why = ineligible("m1", MachineConfig(virtualisation={**LOADER, "install_boot_loader": False}), PATHS)
    assert why is not None and "install_boot_loader=False" in why


def test_a_rebuilt_bootable_disk_is_another_build_in_its_snapshots_keys(tmp_path: Path) -> None:
    disk = tmp_path / "bootdisks" / "b" / "disk.qcow2"
    disk.parent.mkdir(parents=True)
    (disk.parent / "meta.json").write_text(json.dumps({"created": 1.5}))
    first = disk_build_id("image-build-1", disk)
    assert first != disk_build_id("image-build-2", disk)  # the image under it rebuilt
    (disk.parent / "meta.json").write_text(json.dumps({"created": 2.5}))  # the disk rebuilt, same key
    assert disk_build_id("image-build-1", disk) != first


def test_growing_the_root_partition_of_the_bootable_disk() -> None:
    config = MachineConfig(virtualisation={**LOADER, "disk_size": 2048})
    assert {"fdisk", "e2fsprogs"} <= set(config.image_inputs()["packages"])
    assert "fdisk" not in MachineConfig(virtualisation={"disk_size": 2048}).image_inputs()["packages"]
    text = script(config, "m1", grow_root=True)
    relocate, grow = text.index("sfdisk -q --relocate gpt-bak-std"), text.index('-N "$part" "$disk"')
    assert relocate < grow < text.index('partx -u -n "$part"') < text.index('resize2fs "$root_dev"')
    assert "sfdisk" not in script(MachineConfig(virtualisation={"disk_size": 2048}), "m1", grow_root=True)
    _sh_syntax(text)


def _sh_syntax(text: str) -> None:
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
