"""The ``virtualisation.*`` options, each declared exactly once (the schema).

Every option is a field of :class:`Virtualisation` (or of its ``qemu``
sub-record, :class:`~vmtest.config.qemuopts.QemuOptions`) declared with :func:`~vmtest.config.declare.option`:
its NixOS name, documentation, validator and the test that proves it.
Validation, ``from_dict``, ``vmtest options`` and ``docs/options.md``
(:mod:`vmtest.config.docs`) all derive from these declarations; the effect of
each option on QEMU's argv lives in :mod:`vmtest.vm.argv`, pinned by unit
tests. Seed options that have no field here are listed in
:data:`vmtest.config.parity.NOT_DECLARED` with the reason.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmtest.config import bootpath
from vmtest.config.bootpath import AUTO, LOADER_IT, guest_abs_path_or_auto
from vmtest.config.declare import FrozenMap, documented, from_dict, option, options_of
from vmtest.config.firmware import EFI_IT, EfiOptions, TpmOptions, check_firmware, efi_record, tpm_record
from vmtest.config.qemuopts import DISK_INTERFACES, QemuOptions, qemu_record  # noqa: F401 (public names)
from vmtest.config.records import (  # noqa: F401 (the records are part of this schema's public names)
    Drive,
    FileSystem,
    ForwardPort,
    Interface,
    SharedDirectory,
    drive_list,
    forwarding_list,
    map_of,
)
from vmtest.config.validators import (
    boolean,
    disk_image_path,
    display_resolution,
    guest_abs_path,
    ifname,
    int_range,
    optional,
    optional_bool,
    optional_string,
    size_list,
    tag,
    vlan_list,
)
from vmtest.core.contract import ROOT_LABEL
from vmtest.core.errors import ConfigError

DEFAULT_DISK_IMAGE = "{state_dir}/{name}.qcow2"

IT = "tests/integration/test_options.py"


@documented
@dataclass(frozen=True)
@options_of("virtualisation", IT, nixos=True)
class Virtualisation:
    """QEMU-level options of a machine (``virtualisation.*`` in NixOS's qemu-vm.nix)."""

    memory_size: int = option(1024, int_range(128, 1 << 20, " MiB"), proof="test_sizes")
    """Guest memory in MiB (checked against the host's available memory at start)."""
    cores: int = option(1, int_range(1, 256), proof="test_sizes")
    """Number of virtual CPUs."""
    disk_size: int | None = option(None, optional(int_range(256, 1 << 24, " MiB")), proof="test_sizes")
    """Size of the root disk in MiB; the root file system is grown to fill it at boot. Default: 1024, or the image's
    file system when that is larger (the seed's 1024 fits because its root holds no packages; ours holds them all, so a
    fixed default would break as packages are added). An explicit size smaller than the image is an error."""
    disk_image: str | None = option(DEFAULT_DISK_IMAGE, disk_image_path, proof="test_disk_image_persistence")
    """Writable root disk: a qcow2 overlay on the cached image, created on first start. Placeholders {state_dir} and
    {name}. Kept across reboot() and, with --vm-keep-state, across runs. None: nothing persists, writes go to a tmpfs
    overlay and vanish on reboot."""
    empty_disk_images: tuple[int, ...] = option((), size_list, proof="test_sizes")
    """Extra writable disks, one per size in MiB (serial empty<N>), created in the state dir."""
    msize: int = option(16384, int_range(4096, 1 << 20), proof="test_shared_directories")
    """9p maximum packet size in bytes for shared_directories."""
    shared_directories: Mapping[str, SharedDirectory] = option(
        FrozenMap, map_of(SharedDirectory, tag), proof="test_shared_directories", factory=True
    )
    """9p shares: tag -> {source (host dir, must exist), target (guest mount point), security_model (default none)};
    version 9p2000.L, mounted at boot."""
    file_systems: Mapping[str, FileSystem] = option(
        FrozenMap, map_of(FileSystem, guest_abs_path), proof="test_shared_directories", factory=True
    )
    """Extra guest mounts: mount point -> {device, fs_type, options}, mounted at boot."""
    root_device: str | None = option(None, optional_string, proof="test_disk_interface")
    """Guest device holding the root file system (a path, or LABEL=...). Default: the file system labelled vmtest-root,
    as NixOS finds /dev/disk/by-label/nixos (device names race when disks probe in parallel)."""
    use_default_filesystems: bool = option(True, boolean, proof="test_drives")
    """Attach the image as the root disk. False: no root disk is attached; give the root in qemu.drives and
    root_device."""
    use_host_certs: bool = option(False, boolean, proof="test_shared_directories")
    """Copy the host's CA bundle (/etc/ssl/certs/ca-certificates.crt) into the guest at boot."""
    forward_ports: tuple[ForwardPort, ...] = option((), forwarding_list, proof="test_forwarding")
    """User-mode network forwardings: {``from_`` host|guest, proto tcp|udp, host_address (127.0.0.1), host_port,
    guest_address, guest_port}. Any entry adds a user-mode NIC eth0 (10.0.2.15)."""
    restrict_network: bool = option(True, boolean, proof="test_forwarding")
    """Isolate the user-mode NIC (restrict=on): only the forwardings work. Default True (the seed's is False): a test
    guest must not reach real networks; False warns."""
    vlans: tuple[int, ...] = option(
        None, vlan_list, proof="examples/test_router.py::test_router", default_text="[1] if no interfaces else []"
    )
    """VLANs the machine is on; NIC eth<i> is on the i-th VLAN listed, address 192.168.<vlan>.<node>. Default [1] unless
    interfaces are given, then []."""
    interfaces: Mapping[str, Interface] = option(
        FrozenMap,
        map_of(Interface, ifname),
        proof="tests/integration/test_interfaces.py::test_named_interfaces",
        factory=True,
    )
    """Named NICs: name -> {vlan, assign_ip (False)}; assign_ip gives the vlans addressing."""
    graphics: bool = option(True, boolean, proof="tests/integration/test_boot.py::test_machine_without_graphics_boots")
    """Give the machine a virtual display (no window opens on the host); False removes it and makes the serial port the
    only console."""
    resolution: tuple[int, int] = option(
        (1024, 768), display_resolution, proof="tests/unit/test_qemu_argv.py::test_custom_qemu_binary_and_resolution"
    )
    """Display resolution (width, height) in pixels."""
    direct_boot: bool | None = option(
        None,
        optional_bool,
        nixos="virtualisation.directBoot.enable",
        proof="tests/unit/test_option_validation.py::test_seed_changed_initrd_without_direct_boot",
    )
    """Boot the kernel directly (QEMU -kernel). Default: not use_boot_loader. Booting without it needs a boot loader
    (separate issue)."""
    direct_boot_initrd: str | None = option(
        None,
        optional_string,
        nixos="virtualisation.directBoot.initrd",
        proof="tests/unit/test_qemu_argv.py::test_direct_boot_initrd",
    )
    """Initrd for direct boot (default: vmtest's stage 1)."""
    use_boot_loader: bool = option(False, boolean, proof=f"{LOADER_IT}::test_bios_grub_menu_picks_the_second_entry")
    """Boot through GRUB installed on a bootable copy of the image (a GPT disk: BIOS boot partition, EFI System
    Partition, root), started by the firmware instead of QEMU's -kernel. The disk is built once per image and cached
    (vmtest/image/bootdisk.py); each machine's kernel command line reaches GRUB through an SMBIOS OEM string. Together
    with direct_boot it warns as the seed does and boots directly. Such a machine starts from a booted snapshot (its
    firmware and GRUB ran in the boot that saved it; a reboot goes through them again) unless boot_loader_timeout
    shows the menu or install_boot_loader is False; a test about the boot itself says snapshots=False."""
    use_bios_boot: bool = option(
        False, boolean, nixos="virtualisation.useBIOSBoot", proof=f"{LOADER_IT}::test_bios_boot_partition"
    )
    """With use_boot_loader (and no EFI boot): BIOS GRUB boots from a separate boot partition (FAT, labelled BOOT,
    mounted at /boot: the seed's layout) instead of the root's /boot."""
    boot_loader_device: str = option(
        "/dev/disk/by-id/virtio-root", guest_abs_path, proof=f"{LOADER_IT}::test_bios_grub_menu_picks_the_second_entry"
    )
    """The guest path of the disk the boot loader is on (the seed's GRUB install device). vmtest installs GRUB onto the
    disk when it builds it; the guest finds this path in /etc/vmtest/boot-loader-device (for a grub-install of its
    own)."""
    boot_partition: str | None = option(
        AUTO,
        optional(guest_abs_path_or_auto),
        proof=f"{LOADER_IT}::test_bios_boot_partition",
        default_text="ESP with EFI, BOOT with use_bios_boot, else None",
    )
    """The guest device mounted at /boot (vfat) with use_boot_loader. Default as the seed: /dev/disk/by-label/ESP with
    EFI boot, /dev/disk/by-label/BOOT with use_bios_boot, else None (/boot is on the root)."""
    install_boot_loader: bool | None = option(
        None,
        optional_bool,
        proof=f"{LOADER_IT}::test_install_boot_loader_false_leaves_nothing_to_boot",
        default_text="use_boot_loader and use_default_filesystems",
    )
    """Install GRUB on the bootable disk. Default: use_boot_loader and use_default_filesystems. False builds the disk
    with its partitions and files but no boot loader (the firmware finds nothing to boot: for a test that installs one
    itself)."""
    bios: str | None = option(None, optional_string, proof="tests/integration/test_bootpaths.py::test_qboot")
    """Firmware image for direct boot instead of QEMU's SeaBIOS (QEMU -bios), e.g. QEMU's /usr/share/qemu/qboot.rom (a
    minimal firmware that only boots the kernel: faster to start). Such a machine never starts from a snapshot (the
    firmware is what it tests)."""
    use_efi_boot: bool = option(
        False, boolean, nixos="virtualisation.useEFIBoot", proof=f"{EFI_IT}::test_uefi_direct_boot"
    )
    """Boot UEFI firmware (OVMF, see the efi.* rows) instead of SeaBIOS, with a per-machine variable store. With direct
    boot OVMF loads the kernel (as the seed, which exposes the firmware even without a boot loader); the guest has
    /sys/firmware/efi and efivarfs."""
    use_secure_boot: bool = option(
        False, boolean, proof=f"{EFI_IT}::test_secure_boot_from_disk_refuses_an_unsigned_kernel"
    )
    """Secure Boot: OVMF's SMM build with Microsoft's keys enrolled (Debian's), on a q35 machine with smm=on. Needs
    use_efi_boot. With use_boot_loader the firmware checks Debian's signed chain (shim, GRUB, kernel: an unsigned kernel
    does not boot). With direct boot the kernel runs in Secure Boot mode (locked down) but OVMF's kernel loader (edk2
    2022.11) falls back to a loader that checks no signature."""
    efi: EfiOptions = option(EfiOptions, efi_record, proof="", factory=True)
    """The UEFI firmware (see the efi.* rows)."""
    tpm: TpmOptions = option(TpmOptions, tpm_record, proof="", factory=True)
    """A software TPM (see the tpm.* rows)."""
    qemu: QemuOptions = option(QemuOptions, qemu_record, proof="", factory=True)
    """How QEMU is run (see the qemu.* rows)."""

    def __post_init__(self) -> None:
        # the checks across fields, after each field's own (options_of validates them first)
        # vlans is typed as it is after this method; None (the default) means "computed here"
        if self.vlans is None:
            object.__setattr__(self, "vlans", () if self.interfaces else (1,))  # type: ignore[unreachable]
        if self.direct_boot is None:
            object.__setattr__(self, "direct_boot", not self.use_boot_loader)
        if not self.direct_boot and self.direct_boot_initrd is not None:
            raise ConfigError(
                "virtualisation.direct_boot_initrd",
                self.direct_boot_initrd,
                "a changed direct-boot initrd is not used when direct_boot is off",
                "remove direct_boot_initrd or set direct_boot=True",
            )
        bootpath.resolve(self)
        if self.forward_ports and not self.restrict_network:
            warnings.warn(
                "virtualisation.restrict_network=False: the guest's user-mode NIC can reach the host and, through "
                "it, real networks.",
                UserWarning,
                stacklevel=4,
            )
        vlan_of = {f"eth{i}": v for i, v in enumerate(self.vlans, start=1)}
        for name, iface in self.interfaces.items():
            vlan_of[name] = iface.vlan
        if len(set(vlan_of.values())) != len(vlan_of):
            raise ConfigError(
                "virtualisation.interfaces",
                dict(self.interfaces),
                "two NICs on the same VLAN (vlans + interfaces)",
                "connect each VLAN once",
            )
        disks = int(self.use_default_filesystems) + len(self.empty_disk_images) + len(self.qemu.drives)
        if self.qemu.disk_interface == "ide" and disks > 4:
            raise ConfigError(
                "virtualisation.qemu.disk_interface",
                "ide",
                f"{disks} disks do not fit the 4 IDE slots (root + empty_disk_images + drives)",
                "use disk_interface='virtio' or 'scsi'",
            )
        if self.direct_boot_initrd is not None and not os.path.isfile(self.direct_boot_initrd):
            raise ConfigError("virtualisation.direct_boot_initrd", self.direct_boot_initrd, "no such file on the host")
        check_firmware(self)
        if self.bios is not None and not os.path.isfile(self.bios):
            raise ConfigError(
                "virtualisation.bios", self.bios, "no such file on the host", "give a firmware image's path"
            )

    @property
    def boots_from_disk(self) -> bool:
        """True when the machine boots vmtest's bootable disk through its firmware (not QEMU's -kernel)."""
        return self.use_boot_loader and not self.direct_boot and self.use_default_filesystems

    @property
    def user_network(self) -> bool:
        """True when the machine gets a user-mode (SLiRP) NIC: only for forwarded ports."""
        return bool(self.forward_ports)

    def root_disk_mib(self, image_mib: int) -> int:
        """The root disk's size for an image whose file system is ``image_mib`` MiB."""
        return self.disk_size if self.disk_size is not None else max(1024, image_mib)

    @property
    def primary_root_device(self) -> str:
        if self.root_device is not None:
            return self.root_device
        return f"LABEL={ROOT_LABEL}"

    def image_packages(self) -> tuple[str, ...]:
        """Debian packages these options need inside the guest image."""
        pkgs = []
        if self.qemu.guest_agent:
            pkgs.append("qemu-guest-agent")
        if self.disk_size is not None and self.disk_size > 1024:
            pkgs.append("e2fsprogs")
            if self.use_boot_loader:
                pkgs.append("fdisk")  # sfdisk grows the root partition of the bootable disk

        return tuple(pkgs)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Virtualisation:
        return from_dict(cls, "virtualisation", values)
