"""The firmware options: ``virtualisation.efi.*`` (UEFI from OVMF) and ``virtualisation.tpm.*`` (a software
TPM per machine), declared once like the others, and the checks that tie them to the machine's other options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from vmtest.config.declare import documented, option, options_of, options_record
from vmtest.config.validators import boolean, choice, optional_string, string
from vmtest.core.errors import ConfigError

TPM_MODELS = ("tpm-tis", "tpm-crb")
BOOT_IT = "tests/integration/test_bootpaths.py"
EFI_IT = "tests/integration/test_efi.py"
OVMF_DIR = "/usr/share/OVMF"  # Debian's ovmf package
# (code, variables) in an OVMF directory: Debian's 4 MiB builds; with Secure Boot the SMM build and the
# variable store with Microsoft's keys enrolled and Secure Boot turned on (OVMF_CODE_4M.ms.fd is a link to it).
OVMF_FILES = ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")
OVMF_SECURE_FILES = ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")


@documented
@dataclass(frozen=True)
@options_of("virtualisation.efi", EFI_IT, nixos=True)
class EfiOptions:
    """``virtualisation.efi.*``: the UEFI firmware (OVMF) of a machine with ``use_efi_boot``."""

    ovmf: str = option(OVMF_DIR, string, nixos="virtualisation.efi.OVMF", proof="test_uefi_direct_boot")
    """Directory of an OVMF build (Debian's ovmf package): firmware and variables default to its files. The seed names a
    package; its Secure Boot build is picked here by use_secure_boot."""
    firmware: str | None = option(None, optional_string, proof="test_uefi_direct_boot", default_text="see doc")
    """The firmware's code, mapped read-only as the first flash chip (-drive if=pflash,readonly=on). Default:
    {ovmf}/OVMF_CODE_4M.fd, with use_secure_boot {ovmf}/OVMF_CODE_4M.secboot.fd (it needs SMM: such a machine is a q35
    with smm=on)."""
    variables: str | None = option(None, optional_string, proof="test_uefi_direct_boot", default_text="see doc")
    """Template of the variable store: each machine gets a writable copy (the second flash chip), made when missing:
    {state_dir}/efi-vars.fd, or the path in $VMTEST_EFI_VARS ({name} is replaced by the machine's name; the seed's
    NIX_EFI_VARS). It persists across reboot() and with --vm-keep-state across runs. Default: {ovmf}/OVMF_VARS_4M.fd,
    with use_secure_boot {ovmf}/OVMF_VARS_4M.ms.fd (Microsoft's keys enrolled, Secure Boot on)."""
    keep_variables: bool = option(False, boolean, proof="test_keep_variables_across_runs")
    """Keep the variable store across test runs without --vm-keep-state: it lives in the output directory's state/
    (where --vm-keep-state keeps a test's machines) and the next run of the same test boots with it. Default False (the
    seed's default is useBootLoader; there it decides whether a new store starts from the one its disk build wrote, here
    a new store always starts from the template, and a store kept across runs would tie tests to each other)."""

    def files(self, secure: bool) -> tuple[str, str]:
        """The (code, variable store template) this machine uses (pure)."""
        code, variables = OVMF_SECURE_FILES if secure else OVMF_FILES
        return (
            self.firmware or os.path.join(self.ovmf, code),
            self.variables or os.path.join(self.ovmf, variables),
        )


efi_record = options_record(EfiOptions, "expected a dict of efi options (ovmf, firmware, variables, keep_variables)")


class _Firmware(Protocol):
    """The firmware options of :class:`~vmtest.config.virtualisation.Virtualisation`."""

    @property
    def use_efi_boot(self) -> bool: ...

    @property
    def use_secure_boot(self) -> bool: ...

    @property
    def bios(self) -> str | None: ...

    @property
    def efi(self) -> EfiOptions: ...


def check_firmware(virt: _Firmware) -> None:
    """The firmware options together: Secure Boot needs UEFI, UEFI and ``bios`` exclude each other, and the
    OVMF files of a UEFI machine exist."""
    if virt.use_secure_boot and not virt.use_efi_boot:
        raise ConfigError(
            "virtualisation.use_secure_boot",
            True,
            "Secure Boot is a feature of the UEFI firmware, and this machine boots SeaBIOS (use_efi_boot is off)",
            "set use_efi_boot=True as well",
        )
    if not virt.use_efi_boot:
        return
    if virt.bios is not None:
        raise ConfigError(
            "virtualisation.bios",
            virt.bios,
            "a machine has one firmware: use_efi_boot boots OVMF",
            "remove bios, or use_efi_boot",
        )
    code, variables = virt.efi.files(virt.use_secure_boot)
    for option_name, path in (("firmware", code), ("variables", variables)):
        if not os.path.isfile(path):
            given = getattr(virt.efi, option_name) is not None
            raise ConfigError(
                f"virtualisation.efi.{option_name}",
                path,
                "no such file on the host",
                "give the path of an OVMF file" if given else "install Debian's OVMF: apt-get install ovmf",
            )


@documented
@dataclass(frozen=True)
@options_of("virtualisation.tpm", BOOT_IT, nixos=True)
class TpmOptions:
    """``virtualisation.tpm.*``: a TPM 2.0 emulated by swtpm, one per machine."""

    enable: bool = option(False, boolean, proof="test_tpm")
    """Give the machine a TPM 2.0: swtpm, started with the machine and reaped with it (also when pytest is killed), its
    state in the machine's state directory (tpm/), kept across reboot() and with --vm-keep-state across runs. The guest
    sees /dev/tpm0. A booted snapshot holds the TPM's state (QEMU saves swtpm's with the machine's); a kept TPM state is
    booted with, as a kept disk is."""
    package: str = option("swtpm", string, proof="test_tpm")
    """The swtpm program (name on PATH or absolute path); the analogue of the seed's package option."""
    device_model: str = option("tpm-tis", choice(TPM_MODELS), proof="test_tpm_crb_and_provisioning")
    """QEMU's TPM device: tpm-tis (the TIS interface, as the seed) or tpm-crb (the command response buffer)."""
    provisioning: str | None = option(None, optional_string, proof="test_tpm_crb_and_provisioning")
    """Shell command run on the host once, before the TPM is first started (a new state directory), with TPM_STATE_DIR
    naming the TPM's state directory, e.g. "swtpm_setup --tpm2 --tpmstate $TPM_STATE_DIR --createek". A non-zero exit
    stops the start."""


tpm_record = options_record(TpmOptions, "expected a dict of tpm options (enable, package, device_model, provisioning)")
