"""What the bootable disk holds, as pure functions: its partition table, GRUB's configuration files and
the two boot sectors GRUB's BIOS installer would write.

The disk (built by :mod:`vmtest.image.bootdisk`) is shared by every machine of an image, yet each machine
boots its own kernel command line (consoles, stage-1 module groups, accelerator...) and menu timeout. So
the on-disk ``grub.cfg`` holds no machine-specific word: it reads one SMBIOS OEM string (type 11) that
QEMU's ``-smbios`` gives each machine, ``"<timeout> <kernel command line>"`` (:func:`machine_string`),
with GRUB's ``smbios`` and ``regexp`` commands (both in Debian's signed GRUB too, so Secure Boot reads it
the same way). Without that string (a disk booted outside vmtest) the menu boots the root by label with
serial and screen consoles.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmtest.core.contract import ROOT_LABEL

MIB_SECTORS = 2048  # 512-byte sectors per MiB
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"  # GPT "BIOS boot partition": GRUB's core.img
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # EFI System Partition
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # Linux file system
BIOS_BOOT_MIB = 1
ESP_MIB = 128
ESP_VOLUME_ID = "7E57B007"  # FAT serial number: GRUB's EFI stub finds the ESP by it ("7E57-B007")

# GRUB modules in the BIOS core.img: enough to find and read the prefix directory, whose module
# directory has the rest (copied there as grub-install does).
CORE_MODULES = ("biosdisk", "part_gpt", "ext2", "fat", "search_fs_uuid", "search_label", "normal")

# Offsets in GRUB 2's i386-pc boot.img (include/grub/i386/pc/boot.h) and diskboot.img.
_BPB_START, _BPB_END = 0x03, 0x5A  # the BIOS parameter block kept from the disk's first sector
_KERNEL_SECTOR = 0x5C  # 64-bit LBA of core.img's first sector
_BOOT_DRIVE = 0x64  # 0xff: the drive the BIOS booted from
_DRIVE_CHECK = 0x66  # a jump to nop out on hard disks
_PART_START, _PART_END = 0x1B8, 0x1FE  # disk signature + partition table (the protective MBR), kept
_BLOCKLIST = 512 - 12  # diskboot.img's first blocklist {u64 start, u16 sectors, u16 segment}
_CORE_SEGMENT = 0x820  # where diskboot.img loads the rest of core.img


@dataclass(frozen=True)
class Partition:
    number: int
    start_mib: int
    size_mib: int
    type_guid: str
    name: str

    @property
    def offset(self) -> int:
        return self.start_mib << 20

    @property
    def start_sector(self) -> int:
        return self.start_mib * MIB_SECTORS


@dataclass(frozen=True)
class Layout:
    """The disk's GPT partitions: GRUB's BIOS boot partition, the ESP (FAT) and the root (ext4), in MiB."""

    bios: Partition
    esp: Partition
    root: Partition
    total_mib: int  # the whole disk (the last MiB holds the backup GPT)


def layout(root_mib: int) -> Layout:
    """The partitions of a disk whose root file system is ``root_mib`` MiB (1 MiB aligned)."""
    bios = Partition(1, 1, BIOS_BOOT_MIB, BIOS_BOOT_TYPE, "BIOS boot")
    esp = Partition(2, bios.start_mib + BIOS_BOOT_MIB, ESP_MIB, ESP_TYPE, "ESP")
    root = Partition(3, esp.start_mib + ESP_MIB, root_mib, LINUX_TYPE, "root")
    return Layout(bios, esp, root, root.start_mib + root_mib + 1)


def sfdisk_script(disk: Layout) -> str:
    """``sfdisk``'s input for ``disk``: a GPT with fixed partition GUIDs (the disk's GUID too)."""
    lines = ["label: gpt", "label-id: 5E7D15C0-0000-4000-8000-000000000000", "unit: sectors", "first-lba: 2048"]
    for p in (disk.bios, disk.esp, disk.root):
        lines.append(
            f"start={p.start_sector}, size={p.size_mib * MIB_SECTORS}, type={p.type_guid}, "
            f'uuid=5E7D15C0-0000-4000-8000-00000000000{p.number}, name="{p.name}"'
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BootFiles:
    """Where the kernel and GRUB's directory are on the file system GRUB boots from."""

    kernel_release: str
    fs_uuid: str  # the file system holding the kernel (ext4 UUID, or the FAT's "XXXX-XXXX")
    prefix: str  # the directory of kernel and initrd on it: "/boot" on the root, "" on the FAT

    @property
    def kernel(self) -> str:
        return f"{self.prefix}/vmlinuz-{self.kernel_release}"

    @property
    def initrd(self) -> str:
        return f"{self.prefix}/initrd.img-{self.kernel_release}"

    @property
    def grub_dir(self) -> str:
        return f"{self.prefix}/grub"


FALLBACK_CMDLINE = f"root=LABEL={ROOT_LABEL} console=tty0 console=ttyS0,115200"
ENTRIES = (
    ("vmtest", "Debian GNU/Linux, with Linux {release}", ""),
    ("vmtest-recovery", "Debian GNU/Linux, with Linux {release} (recovery mode)", " single"),
)


def grub_cfg(files: BootFiles) -> str:
    """The menu: the default entry and Debian's recovery-mode entry (``single``: systemd's rescue.target).

    The machine's OEM string sets ``timeout`` and ``vmtest_cmdline``; ``timeout_style=menu`` draws the
    menu for that long (0: no menu, the default entry boots at once)."""
    lines = [
        "# generated by vmtest (vmtest/image/grubfiles.py): the machine's part comes from its SMBIOS OEM string",
        "set default=0",
        "set timeout=0",
        "set timeout_style=menu",
        f'set vmtest_cmdline="{FALLBACK_CMDLINE}"',
        "if smbios --type 11 --get-string 4 --set vmtest_machine; then",
        "  regexp --set 1:timeout --set 2:vmtest_cmdline '^([0-9]+) (.*)$' \"$vmtest_machine\"",
        "fi",
        f"search --no-floppy --fs-uuid --set=root {files.fs_uuid}",
    ]
    for ident, title, extra in ENTRIES:
        lines += [
            f"menuentry '{title.format(release=files.kernel_release)}' --id {ident} {{",
            f"  linux {files.kernel} $vmtest_cmdline{extra}",
            f"  initrd {files.initrd}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def efi_stub_cfg(esp_uuid: str, grub_dir: str) -> str:
    """``EFI/debian/grub.cfg`` on the ESP: Debian's signed GRUB reads it (its prefix is /EFI/debian) and is
    sent on to the menu."""
    return f"search --no-floppy --fs-uuid --set=root {esp_uuid}\nconfigfile ($root){grub_dir}/grub.cfg\n"


def core_cfg(files: BootFiles) -> str:
    """The configuration built into the BIOS core.img: find the file system by UUID, set the prefix."""
    return f"search.fs_uuid {files.fs_uuid} root\nset prefix=($root){files.grub_dir}\n"


def machine_string(timeout: int, cmdline: list[str]) -> str:
    """The SMBIOS OEM string the disk's grub.cfg reads."""
    return f"{timeout} {' '.join(cmdline)}"


def smbios_args(timeout: int, cmdline: list[str]) -> list[str]:
    """QEMU's ``-smbios`` for :func:`machine_string` (commas in option values are doubled)."""
    return ["-smbios", "type=11,value=" + machine_string(timeout, cmdline).replace(",", ",,")]


def boot_sector(boot_img: bytes, first_sector: bytes, core_lba: int) -> bytes:
    """GRUB's boot.img made the disk's first sector, as grub-bios-setup makes it: the disk's BIOS parameter
    block and partition table kept, core.img's location written in, the floppy check skipped."""
    if len(boot_img) != 512 or len(first_sector) != 512:
        raise ValueError("boot.img and the disk's first sector are 512 bytes each")
    out = bytearray(boot_img)
    out[_BPB_START:_BPB_END] = first_sector[_BPB_START:_BPB_END]
    out[_DRIVE_CHECK : _DRIVE_CHECK + 2] = b"\x90\x90"
    out[_PART_START:_PART_END] = first_sector[_PART_START:_PART_END]
    out[_KERNEL_SECTOR : _KERNEL_SECTOR + 8] = struct.pack("<Q", core_lba)
    out[_BOOT_DRIVE] = 0xFF
    return bytes(out)


def core_image(core_img: bytes, core_lba: int) -> bytes:
    """core.img padded to whole sectors, its first sector's blocklist pointing at the rest of it, which
    follows at ``core_lba + 1`` (one contiguous run, a terminator before it)."""
    padded = core_img + bytes(-len(core_img) % 512)
    sectors = len(padded) // 512
    if sectors > BIOS_BOOT_MIB * MIB_SECTORS:
        raise ValueError(f"core.img is {sectors} sectors: it does not fit the BIOS boot partition")
    out = bytearray(padded)
    out[_BLOCKLIST : _BLOCKLIST + 12] = struct.pack("<QHH", core_lba + 1, sectors - 1, _CORE_SEGMENT)
    out[_BLOCKLIST - 12 : _BLOCKLIST] = bytes(12)
    return bytes(out)
