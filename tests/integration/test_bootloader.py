"""Booting through GRUB from vmtest's bootable disk, in real guests (docs/options.md links here).

A boot-loader machine starts from a booted snapshot as any other (its firmware and GRUB ran in the boot
that saved it), unless it shows GRUB's menu (``boot_loader_timeout``) or its disk has no boot loader: the
menu test and the empty disk boot every time.
"""

from __future__ import annotations

from vmtest import MachineConfig
from vmtest.vm.restore import Restore, SaveSnapshot

# Long enough for the menu to be read under TCG (tesseract: a few seconds a screen) before a key stops
# the countdown.
MENU = MachineConfig(virtualisation={"use_boot_loader": True}, boot_loader_timeout=60)
BIOS_BOOT = MachineConfig(virtualisation={"use_boot_loader": True, "use_bios_boot": True, "disk_size": 2048})
NOT_INSTALLED = MachineConfig(virtualisation={"use_boot_loader": True, "install_boot_loader": False})


def test_bios_grub_menu_picks_the_second_entry(vm_factory) -> None:
    vm = vm_factory("grub", MENU)
    vm.start()
    assert not isinstance(vm.vm.start_path, Restore)  # (the menu: a real boot)
    vm.wait_for_text("GNU GRUB", timeout=300)
    vm.send_key("down")
    vm.send_key("ret")
    cmdline = vm.succeed("cat /proc/cmdline").split()
    # the second entry is Debian's recovery mode: the machine's command line (from its SMBIOS string) + single
    assert cmdline[-1] == "single", cmdline
    assert cmdline[0].startswith("BOOT_IMAGE=/boot/vmlinuz-"), cmdline
    assert "console=ttyS0,115200" in cmdline, cmdline
    vm.wait_for_unit("rescue.target")  # systemd went for the rescue target, as Debian's recovery entry does
    cfg = vm.succeed("cat /boot/grub/grub.cfg")
    assert "recovery mode" in cfg and "smbios --type 11" in cfg
    vm.succeed("test -f /boot/grub/i386-pc/normal.mod")
    # GPT: BIOS boot partition, ESP, root; /boot is on the root (no boot partition without EFI/use_bios_boot)
    assert vm.succeed("findmnt -no SOURCE /").strip() == "/dev/vda3"
    assert vm.succeed("findmnt -no TARGET /boot || true").strip() == ""
    assert vm.succeed("blkid -o value -s LABEL /dev/vda2").strip() == "ESP"
    assert vm.succeed("cat /etc/vmtest/boot-loader-device").strip() == "/dev/disk/by-id/virtio-root"
    assert vm.succeed("readlink -f /dev/disk/by-id/virtio-root").strip() == "/dev/vda"
    argv = vm.vm.argv
    assert "-kernel" not in argv
    assert argv[-2] == "-smbios" and argv[-1].startswith("type=11,value=60 root=LABEL=vmtest-root "), argv[-2:]


def test_bios_boot_partition(vm_factory) -> None:
    vm = vm_factory("biosboot", BIOS_BOOT)
    vm.start()
    # restored from its booted snapshot, or the boot that saves it
    assert isinstance(vm.vm.start_path, (Restore, SaveSnapshot)), vm.vm.start_path.name
    # no menu (timeout 0): the default entry
    assert "single" not in vm.succeed("cat /proc/cmdline").split()
    assert vm.succeed("findmnt -no FSTYPE,SOURCE /boot").split() == ["vfat", "/dev/vda2"]
    assert vm.succeed("blkid -o value -s LABEL /dev/vda2").strip() == "BOOT"
    # BIOS GRUB read its modules and menu from the boot partition: /boot/grub there
    vm.succeed("test -f /boot/grub/grub.cfg", "test -f /boot/grub/i386-pc/normal.mod", "ls /boot/vmlinuz-*")
    assert "-kernel" not in vm.vm.argv
    # disk_size: the root partition (the last) and its file system grew to the end of the 2 GiB disk
    assert int(vm.succeed("blockdev --getsize64 /dev/vda")) == 2048 << 20
    root_mib = int(vm.succeed("blockdev --getsize64 /dev/vda3")) >> 20
    assert root_mib == 2048 - 130 - 1, root_mib  # after the BIOS boot partition and the ESP, before the backup GPT
    assert int(vm.succeed("df -m --output=size / | tail -1")) > 1700


def test_install_boot_loader_false_leaves_nothing_to_boot(vm_factory) -> None:
    vm = vm_factory("nogrub", NOT_INSTALLED)
    vm.start()
    # SeaBIOS finds the protective MBR's signature and jumps into its empty boot code: no GRUB follows
    vm.wait_for_text("Booting from Hard Disk", timeout=120)
    vm.sleep(10)
    screen = vm.get_screen_text()
    assert "GRUB" not in screen and "Booting from Hard Disk" in screen, screen
    assert "-kernel" not in vm.vm.argv
    vm.release()
