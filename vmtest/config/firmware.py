"""The ``virtualisation.tpm.*`` options: a software TPM per machine (declared once, like the others)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmtest.config.declare import documented, from_dict, option, validate_fields
from vmtest.config.validators import boolean, choice, optional_string, string
from vmtest.core.errors import ConfigError

TPM_MODELS = ("tpm-tis", "tpm-crb")
BOOT_IT = "tests/integration/test_bootpaths.py"


@documented
@dataclass(frozen=True)
class TpmOptions:
    """``virtualisation.tpm.*``: a TPM 2.0 emulated by swtpm, one per machine."""

    enable: bool = option(
        False,
        "Give the machine a TPM 2.0: swtpm, started with the machine and reaped with it (also when pytest is "
        "killed), its state in the machine's state directory (tpm/), kept across reboot() and with "
        "--vm-keep-state across runs. The guest sees /dev/tpm0. Such a machine never starts from a snapshot.",
        boolean,
        nixos="virtualisation.tpm.enable",
        proof=f"{BOOT_IT}::test_tpm",
    )
    package: str = option(
        "swtpm",
        "The swtpm program (name on PATH or absolute path); the analogue of the seed's package option.",
        string,
        nixos="virtualisation.tpm.package",
        proof=f"{BOOT_IT}::test_tpm",
    )
    device_model: str = option(
        "tpm-tis",
        "QEMU's TPM device: tpm-tis (the TIS interface, as the seed) or tpm-crb (the command response buffer).",
        choice(TPM_MODELS),
        nixos="virtualisation.tpm.deviceModel",
        proof=f"{BOOT_IT}::test_tpm_crb_and_provisioning",
    )
    provisioning: str | None = option(
        None,
        "Shell command run on the host once, before the TPM is first started (a new state directory), with "
        "TPM_STATE_DIR naming the TPM's state directory, e.g. "
        '"swtpm_setup --tpm2 --tpmstate $TPM_STATE_DIR --createek". A non-zero exit stops the start.',
        optional_string,
        nixos="virtualisation.tpm.provisioning",
        proof=f"{BOOT_IT}::test_tpm_crb_and_provisioning",
    )

    def __post_init__(self) -> None:
        validate_fields(self, "virtualisation.tpm")


def tpm_record(name: str, value: Any) -> TpmOptions:
    if isinstance(value, TpmOptions):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "expected a dict of tpm options (enable, package, device_model, provisioning)")
    return from_dict(TpmOptions, name, value)
