"""Boot paths in real guests: alternate firmware (qboot) and the software TPM (docs/options.md links here)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from vmtest import Machine, MachineConfig

QBOOT = "/usr/share/qemu/qboot.rom"
PROVISION = 'swtpm_setup --tpm2 --tpmstate "$TPM_STATE_DIR" --createek --config /dev/null'


def _swtpms_in(state: Path) -> list[str]:
    """swtpm processes serving the machine whose state directory is ``state``."""
    out = subprocess.run(["pgrep", "-a", "-f", f"swtpm socket .*{state}/"], capture_output=True, text=True).stdout
    return out.splitlines()


def _wait_gone(state: Path, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while _swtpms_in(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _swtpms_in(state)


def _state(vm: Machine) -> Path:
    assert vm.state_dir is not None
    return vm.state_dir


def test_qboot(vm_factory) -> None:
    vm = vm_factory("qboot", MachineConfig(virtualisation={"bios": QBOOT}))
    assert vm.succeed("echo up").strip() == "up"
    assert f"-bios {QBOOT}" in " ".join(vm.vm.argv)
    # SeaBIOS writes SMBIOS tables with its name as the BIOS vendor; qboot writes none of its own.
    vendor = vm.execute("cat /sys/class/dmi/id/bios_vendor")[1].strip()
    assert vendor != "SeaBIOS", vendor


def test_tpm(vm_factory) -> None:
    vm = vm_factory("tpm", MachineConfig(packages=["tpm2-tools"], virtualisation={"tpm": {"enable": True}}))
    vm.succeed("test -c /dev/tpm0")
    driver = vm.succeed("readlink -f /sys/class/tpm/tpm0/device/driver")
    assert "tpm_tis" in driver, driver
    pcrs = vm.succeed("tpm2_pcrread sha256:0,7")
    assert "sha256:" in pcrs and "0 :" in pcrs, pcrs
    state = _state(vm)
    assert len(_swtpms_in(state)) == 1
    vm.shutdown()  # QEMU exits: swtpm (--terminate) goes with it
    assert _wait_gone(state) == [], "swtpm outlived its QEMU"


def test_tpm_crb_and_provisioning(vm_factory) -> None:
    vm = vm_factory(
        "tpmcrb",
        MachineConfig(
            packages=["tpm2-tools"],
            virtualisation={"tpm": {"enable": True, "device_model": "tpm-crb", "provisioning": PROVISION}},
        ),
    )
    driver = vm.succeed("readlink -f /sys/class/tpm/tpm0/device/driver")
    assert "crb" in driver, driver
    # swtpm_setup --createek made the RSA EK persistent at 0x81010001 before the first boot
    assert "0x81010001" in vm.succeed("tpm2_getcap handles-persistent")
    state = _state(vm)
    vm.release()  # QEMU killed: swtpm is killed with it
    assert _wait_gone(state) == [], "swtpm outlived its machine"


SAVING = "cold boot, saving a booted snapshot"
RESTORED = "restore of a booted snapshot"


def test_tpm_state_travels_in_a_booted_snapshot(vm_image_store, tmp_path: Path) -> None:
    """Two starts of a provisioned TPM machine: the first boots and saves its snapshot (or an earlier run did),
    the second restores it. The restored TPM is the saved one: started (its random numbers answer), the PCRs
    the firmware extended at the boot, the EK the provisioning made persistent, although the provisioning did
    not run for it (its own state directory has no mark of it) and its swtpm started on an empty state."""
    marked = f'{PROVISION} && touch "$TPM_STATE_DIR/provisioned-here"'
    cfg = MachineConfig(packages=["tpm2-tools"], virtualisation={"tpm": {"enable": True, "provisioning": marked}})
    starts, pcrs = [], []
    for i in range(2):
        vm = Machine("tpmsnap", cfg, store=vm_image_store, snapshots=True, state_dir=tmp_path / f"s{i}")
        try:
            vm.succeed("test -c /dev/tpm0")
            starts.append(vm.vm.start_path.name)
            assert "0x81010001" in vm.succeed("tpm2_getcap handles-persistent")
            assert len(vm.succeed("tpm2_getrandom 8 | od -An -tx1").split()) == 8
            pcrs.append(vm.succeed("tpm2_pcrread sha256:0"))
            provisioned_here = (_state(vm) / "tpm" / "provisioned-here").exists()
            assert provisioned_here == (starts[-1] != RESTORED), (starts, provisioned_here)
            assert (_state(vm) / "tpm" / "tpm2-00.permall").is_file()
            state = _state(vm)
        finally:
            vm.release()
        assert _wait_gone(state) == [], "swtpm outlived its machine"
    assert starts[0] in (SAVING, RESTORED) and starts[1] == RESTORED, starts
    assert pcrs[0] == pcrs[1], pcrs
    assert int(pcrs[1].split()[-1], 16) != 0, pcrs  # SeaBIOS measured the boot into PCR 0
