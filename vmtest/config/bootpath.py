"""How a machine boots: the boot-loader options' computed defaults and the combinations that are errors.

The options themselves are declared in :class:`vmtest.config.virtualisation.Virtualisation`; this
module holds what the seed computes from them (``directBoot.enable = !useBootLoader``,
``installBootLoader = useBootLoader && useDefaultFilesystems``, ``bootPartition`` by boot mode) and
vmtest's errors for settings that would have no effect or nothing to boot.
"""

from __future__ import annotations

import warnings
from typing import Any

from vmtest.config.validators import guest_abs_path
from vmtest.core.errors import ConfigError

# (``virt`` below is a vmtest.config.virtualisation.Virtualisation being built; not imported: that
# module imports this one)
Virtualisation = Any

AUTO = "auto"  # boot_partition's default: the seed's, computed from the boot mode
LOADER_IT = "tests/integration/test_bootloader.py"
ESP_DEVICE = "/dev/disk/by-label/ESP"
BOOT_DEVICE = "/dev/disk/by-label/BOOT"


def guest_abs_path_or_auto(name: str, value: Any) -> str:
    return AUTO if value == AUTO else guest_abs_path(name, value)


def uses_efi(virt: Virtualisation) -> bool:
    """The machine boots through UEFI (``use_efi_boot``)."""
    return bool(virt.use_efi_boot)


def default_boot_partition(virt: Virtualisation) -> str | None:
    if uses_efi(virt):
        return ESP_DEVICE
    return BOOT_DEVICE if virt.use_bios_boot else None


def _set(virt: Virtualisation, name: str, value: object) -> None:
    object.__setattr__(virt, name, value)


def resolve(virt: Virtualisation) -> None:
    """Fill in the computed defaults of ``virt`` (frozen) and reject what cannot work."""
    if not virt.use_boot_loader:
        if virt.use_bios_boot:
            raise ConfigError(
                "virtualisation.use_bios_boot",
                True,
                "a BIOS boot partition is only made on the bootable disk of use_boot_loader",
                "set use_boot_loader=True too, or remove use_bios_boot",
            )
        if virt.boot_partition not in (AUTO, None):
            raise ConfigError(
                "virtualisation.boot_partition",
                virt.boot_partition,
                "/boot is only mounted from a boot partition with use_boot_loader",
                "set use_boot_loader=True too, or remove boot_partition",
            )
        if virt.install_boot_loader:
            raise ConfigError(
                "virtualisation.install_boot_loader",
                True,
                "the boot loader is installed on the bootable disk of use_boot_loader",
                "set use_boot_loader=True too, or remove install_boot_loader",
            )
    if virt.install_boot_loader and not virt.use_default_filesystems:
        raise ConfigError(
            "virtualisation.install_boot_loader",
            True,
            "with use_default_filesystems=False vmtest attaches no root disk to install a boot loader on",
            "remove install_boot_loader (boot your own disks from qemu.drives), or use the default file systems",
        )
    if virt.install_boot_loader is None:
        _set(virt, "install_boot_loader", virt.use_boot_loader and virt.use_default_filesystems)
    if virt.boot_partition == AUTO:
        _set(virt, "boot_partition", default_boot_partition(virt) if virt.use_boot_loader else None)
    if not virt.direct_boot and not virt.use_boot_loader and virt.use_default_filesystems:
        raise ConfigError(
            "virtualisation.direct_boot",
            False,
            "without direct boot the firmware boots the root disk, and vmtest's image has no boot loader "
            "unless use_boot_loader is set",
            "set use_boot_loader=True (GRUB on a bootable disk), or boot your own disks "
            "(use_default_filesystems=False with qemu.drives)",
        )
    if virt.direct_boot and virt.use_boot_loader:
        warnings.warn(
            "virtualisation: direct_boot and use_boot_loader are both enabled; QEMU boots the kernel "
            "directly and never runs the boot loader, so use_boot_loader has no effect. Disable one of them.",
            UserWarning,
            stacklevel=5,
        )
