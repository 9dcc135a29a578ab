"""UEFI in real guests: OVMF with direct kernel boot, the per-machine variable store (across reboot(), a
snapshot restore and, with efi.keep_variables, the next run), Secure Boot (docs/options.md links here)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmtest import Machine, MachineConfig
from vmtest.core.errors import MachineError

GUID = "3b4c2a4e-8a36-4c55-9b4e-7d0a1f3e5c21"  # a vendor GUID of our own for test variables
EFIVARS = "/sys/firmware/efi/efivars"
SECURE_BOOT_VAR = f"{EFIVARS}/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
UEFI = MachineConfig(virtualisation={"use_efi_boot": True})
SECURE = MachineConfig(virtualisation={"use_efi_boot": True, "use_secure_boot": True})


def write_var(vm: Machine, name: str, value: str) -> None:
    """A new non-volatile, boot-service and runtime variable (attributes 0x7) through efivarfs."""
    vm.succeed(f"printf '\\007\\000\\000\\000{value}' > {EFIVARS}/{name}-{GUID}")


def read_var(vm: Machine, name: str) -> str | None:
    # (cat: efivarfs files do not seek, as tail would)
    status, out = vm.execute(f"set -o pipefail; cat {EFIVARS}/{name}-{GUID} | tail -c +5")
    return out if status == 0 else None


def test_uefi_direct_boot(vm_factory) -> None:
    """OVMF starts the kernel's EFI stub; a variable written through efivarfs survives a reboot (a real boot
    from the firmware's reset: the start itself may be a restored snapshot)."""
    vm = vm_factory("uefi", UEFI)
    vm.succeed("test -d /sys/firmware/efi")
    argv = vm.vm.argv
    store = vm.state_dir / "efi-vars.fd"
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd" in argv
    assert f"if=pflash,format=raw,unit=1,readonly=off,file={store}" in argv
    assert argv[argv.index("-kernel") + 1].endswith("/vmlinuz")  # OVMF starts the EFI stub
    assert "64" == vm.succeed("cat /sys/firmware/efi/fw_platform_size").strip()
    write_var(vm, "VmtestReboot", "survives")
    vm.reboot()
    assert read_var(vm, "VmtestReboot") == "survives"
    assert b"V\x00m\x00t\x00e\x00s\x00t\x00R\x00e\x00b\x00o\x00o\x00t" in store.read_bytes()  # UCS-2 name


@pytest.mark.parametrize("config", [UEFI, SECURE], ids=["uefi", "secure-boot"])
def test_uefi_snapshot_restore(vm_image_store, tmp_path, config, caplog) -> None:
    """The first start boots and saves a snapshot (its variable store with it); the second is restored and
    its firmware's runtime services still write variables that survive a reboot (Secure Boot: through SMM).
    The reboot empties TCG's translated code after the reset (with the restored guest's code still cached,
    OVMF's Secure Boot check of the kernel took 54 s instead of 15)."""
    caplog.set_level(logging.DEBUG, logger="vmtest.uefisnap")
    starts = []
    for i in range(2):
        vm = Machine("uefisnap", config, store=vm_image_store, snapshots=True, state_dir=tmp_path / f"s{i}")
        try:
            vm.succeed("test -d /sys/firmware/efi")
            starts.append(vm.vm.start_path.name)
            if i == 0:
                write_var(vm, "VmtestAfterSave", "x")  # written after the save: not in the snapshot
                continue
            assert read_var(vm, "VmtestAfterSave") is None
            write_var(vm, "VmtestRestored", "restored")
            vm.reboot()
            assert read_var(vm, "VmtestRestored") == "restored"
            assert "uefisnap: translated code emptied after the reset" in caplog.text
        finally:
            vm.release()
    assert starts[1] == "restore of a booted snapshot", starts


KEEP_TEST = r"""
import pytest
from vmtest import MachineConfig

KEEP = MachineConfig(virtualisation={"use_efi_boot": True, "efi": {"keep_variables": True}})

@pytest.mark.vmtest(nodes={"keeper": KEEP})
def test_keep(keeper):
    runs = len(keeper.succeed("ls /sys/firmware/efi/efivars | grep '^VmtestRun' || true").split())
    print(f"RUNS={runs}", flush=True)
    keeper.succeed(f"printf '\\007\\000\\000\\000x' > /sys/firmware/efi/efivars/VmtestRun{runs}-@GUID@")
    keeper.shutdown()
"""


def test_keep_variables_across_runs(tmp_path: Path) -> None:
    """Two pytest runs of one test, no --vm-keep-state: the second finds the variable the first wrote."""
    (tmp_path / "test_keep.py").write_text(KEEP_TEST.replace("@GUID@", GUID))
    out = tmp_path / "o"

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "-o", "log_cli=false"]
            + [f"--vm-output-dir={out}", "test_keep.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        return proc.stdout

    assert "RUNS=0" in run()
    assert "RUNS=1" in run()  # the first run's variable is there: the store was kept
    kept = list(out.glob("state/*/keeper/efi-vars.fd"))
    assert len(kept) == 1, kept


def test_secure_boot(vm_factory) -> None:
    vm = vm_factory(
        "secboot",
        MachineConfig(
            packages=["mokutil", "tpm2-tools"],
            virtualisation={"use_efi_boot": True, "use_secure_boot": True, "tpm": {"enable": True}},
        ),
    )
    assert "SecureBoot enabled" in vm.succeed("mokutil --sb-state")
    assert vm.succeed(f"cat {SECURE_BOOT_VAR} | od -An -tu1").split()[-1] == "1"
    argv = " ".join(vm.vm.argv)
    assert "-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on" in argv
    assert "OVMF_CODE_4M.secboot.fd" in argv
    # OVMF measures the Secure Boot state and its keys into PCR 7
    pcr7 = vm.succeed("tpm2_pcrread sha256:7").split()[-1]
    assert pcr7.startswith("0x") and int(pcr7, 16) != 0, pcr7


def test_secure_boot_from_disk_refuses_an_unsigned_kernel(vm_factory) -> None:
    """OVMF (Microsoft's keys) -> Debian's signed shim -> signed GRUB -> signed kernel; with the kernel's
    signature removed GRUB refuses it, and the reboot fails as soon as GRUB says so (not at its timeout)."""
    vm = vm_factory(
        "sbdisk",
        MachineConfig(
            packages=["mokutil", "sbsigntool", "tpm2-tools"],
            virtualisation={
                "use_efi_boot": True,
                "use_secure_boot": True,
                "use_boot_loader": True,
                "tpm": {"enable": True},
            },
        ),
    )
    assert "SecureBoot enabled" in vm.succeed("mokutil --sb-state")
    assert "BOOT_IMAGE=/vmlinuz-" in vm.succeed("cat /proc/cmdline")  # GRUB booted it, not QEMU's -kernel
    assert "-kernel" not in vm.vm.argv
    vm.succeed("test -f /boot/EFI/BOOT/BOOTX64.EFI")  # shim, on the ESP mounted at /boot
    pcr7 = vm.succeed("tpm2_pcrread sha256:7").split()[-1]
    assert int(pcr7, 16) != 0, pcr7
    kernel = "/boot/vmlinuz-" + vm.succeed("uname -r").strip()
    assert "signature 1" in vm.succeed(f"sbverify --list {kernel}")
    vm.succeed(f"sbattach --remove {kernel} && sync")
    assert "No signature table present" in vm.execute(f"sbverify --list {kernel} 2>&1")[1]
    start = time.monotonic()
    with pytest.raises(MachineError) as info:
        # GRUB refuses the kernel ~8 s after the reset (40 s and more under load); then nothing more comes,
        # and the wait for the shell ends there, not at its timeout
        vm.reboot(timeout=300)
    elapsed = time.monotonic() - start
    assert elapsed < 200, elapsed
    assert "the boot loader refused the kernel: 'error: bad shim signature" in str(info.value), str(info.value)
    assert "bad shim signature" in vm.get_console_log()
