"""The boot half of QEMU's command line, as pure functions: the accelerator, the chipset, the firmware
(SeaBIOS, ``bios``, OVMF's flash for UEFI), the kernel's direct boot or the boot loader's OEM string, the
TPM and the generation ID. :mod:`vmtest.vm.argv` assembles them with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.image.grubfiles import smbios_args
from vmtest.vm.hostmem import tcg_accel
from vmtest.vm.paths import MachinePaths


@dataclass(frozen=True)
class Boot:
    """The boot inputs: kernel, initrd, the cached root image (the overlays' base) and, for a UEFI machine,
    its variable store (:mod:`vmtest.vm.efivars`)."""

    kernel: Path
    initrd: Path
    image: Path | None = None
    efi_vars: Path | None = None
    modules: Path | None = None  # the kernel's module disk (:mod:`vmtest.image.kernel`)


# Under TCG, every CPU feature QEMU can emulate except ERMS and FSRM ("fast" `rep movsb`/`rep stosb`):
# with them the kernel zeroes and copies pages with `rep stosb`/`rep movsb` (and glibc copies large
# blocks so), which TCG runs one byte per loop iteration, where the `rep stosq`/`movsq` paths take eight
# bytes. Measured on 6 Dec 2026 (quiet host, interleaved cold boots): launch to the first command 5.39 ->
# 4.81 s (medians of 2 pairs: -0.71, -0.47 s), as fast as a baseline x86-64-v2 model. A test that wants
# them back passes `-cpu max` in `virtualisation.qemu.options` (QEMU takes the last -cpu).
TCG_CPU = "max,-erms,-fsrm"


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", tcg_accel(), "-cpu", TCG_CPU]
    raise ValueError(f"unknown accelerator {accel!r}")


def boot_args(boot: Boot, params: list[str], config: MachineConfig | None = None) -> list[str]:
    """QEMU's direct boot of the kernel with ``params``; nothing when direct boot is off (the firmware boots
    the disks: :func:`boot_loader_args` passes ``params`` on to GRUB)."""
    if config is not None and not config.virtualisation.direct_boot:
        return []
    initrd = boot.initrd
    if config is not None and config.virtualisation.direct_boot_initrd is not None:
        initrd = Path(config.virtualisation.direct_boot_initrd)
    return ["-kernel", str(direct_kernel(boot, config)), "-initrd", str(initrd), "-append", " ".join(params)]


def direct_kernel(boot: Boot, config: MachineConfig | None) -> Path:
    """The kernel QEMU loads: the image's (the PVH-bootable ELF ``vmlinux`` when the kernel has one), but the
    bzImage next to it (``vmlinuz``, always kept) for a machine with a TPM: booted through PVH, the guest
    kernel's early ACPI table list cannot take the TPM's table ("Resize of Root Table Array is not
    allowed", repeated), loses the APIC table and finds no TPM; and for UEFI: OVMF starts the kernel's EFI
    stub, which only the bzImage has (PVH is an entry point for SeaBIOS's loader)."""
    virt = config.virtualisation if config is not None else None
    if virt is not None and (virt.tpm.enable or virt.use_efi_boot) and boot.kernel.name == "vmlinux":
        return boot.kernel.with_name("vmlinuz")
    return boot.kernel


def boot_loader_args(config: MachineConfig, params: list[str]) -> list[str]:
    """A machine booting vmtest's bootable disk: its menu timeout and kernel command line as the SMBIOS OEM
    string the disk's grub.cfg reads (:mod:`vmtest.image.grubfiles`). Last on the command line: GRUB reads
    the last OEM string, so one in ``qemu.options`` does not replace it."""
    if not config.virtualisation.boots_from_disk:
        return []
    return smbios_args(config.boot_loader_timeout, params)


# Secure Boot: OVMF's SMM build keeps its variables safe from the guest in System Management Mode, which it
# supports only on the q35 chipset; the flash is then writable from SMM only.
SECURE_BOOT_MACHINE = ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]


def machine_type_args(config: MachineConfig) -> list[str]:
    """The chipset: QEMU's ``pc`` (i440FX), or q35 with SMM for Secure Boot (see SECURE_BOOT_MACHINE)."""
    return list(SECURE_BOOT_MACHINE) if config.virtualisation.use_secure_boot else ["-machine", "pc"]


def firmware_args(config: MachineConfig, boot: Boot | None = None) -> list[str]:
    """``bios``: QEMU's -bios (else its default SeaBIOS). ``use_efi_boot``: OVMF's code as a read-only flash
    chip and the machine's variable store (``boot.efi_vars``) as a writable one."""
    virt = config.virtualisation
    if virt.use_efi_boot:
        if boot is None or boot.efi_vars is None:
            raise ValueError("a UEFI machine's command line needs its variable store (Boot.efi_vars)")
        code, _ = virt.efi.files(virt.use_secure_boot)
        return [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,readonly=off,file={boot.efi_vars}",
        ]
    return ["-bios", virt.bios] if virt.bios is not None else []


def vmgenid_args(config: MachineConfig) -> list[str]:
    """A generation ID: QEMU makes a new GUID at every start, so a restored guest reseeds its RNG. Not with
    alternate firmware (``bios``): such a machine is never restored, and qboot hangs on the device (it does
    not run QEMU's ACPI table loader that places the GUID)."""
    return ["-device", "vmgenid,guid=auto"] if config.virtualisation.bios is None else []


def tpm_args(config: MachineConfig, paths: MachinePaths) -> list[str]:
    """``tpm.enable``: QEMU's TPM emulator backend on swtpm's control socket, and the TPM device."""
    tpm = config.virtualisation.tpm
    if not tpm.enable:
        return []
    return [
        "-chardev",
        f"socket,id=chrtpm,path={paths.tpm_socket}",
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        f"{tpm.device_model},tpmdev=tpm0",
    ]
