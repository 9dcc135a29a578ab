"""UEFI (OVMF) and Secure Boot: the options, QEMU's command line, the variable store's place and creation,
snapshots and run-vm (pure parts; no QEMU). The OVMF files are fakes in tmp_path."""

from __future__ import annotations

import logging
import stat
import subprocess
from pathlib import Path

import pytest

from vmtest.cli.runvm import script
from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError
from vmtest.image import BootImage
from vmtest.vm import efivars
from vmtest.vm.argv import Boot, firmware_args, machine_argv
from vmtest.vm.paths import MachinePaths
from vmtest.vm.snapshot import disk_sizes, firmware_digest, ineligible, key_argv, snapshot_key

IMAGE = BootImage("i" * 32, Path("/cache/images/i/root.qcow2"), Path("/k/vmlinux"), Path("/k/initrd"), "6.1", 1024)
PATHS = MachinePaths(Path("/run/vmtest/m1"))
VARS = Path("/run/vmtest/m1/efi-vars.fd")
BOOT = Boot(IMAGE.kernel, IMAGE.initrd, IMAGE.disk, VARS)


@pytest.fixture
def ovmf(tmp_path: Path) -> Path:
    """A fake OVMF directory with Debian's file names."""
    for name, data in (
        ("OVMF_CODE_4M.fd", b"code"),
        ("OVMF_VARS_4M.fd", b"vars"),
        ("OVMF_CODE_4M.secboot.fd", b"smm code"),
        ("OVMF_VARS_4M.ms.fd", b"ms vars"),
    ):
        (tmp_path / name).write_bytes(data)
    return tmp_path


def uefi(ovmf: Path, **more: object) -> MachineConfig:
    efi = more.pop("efi", {})
    assert isinstance(efi, dict)
    return MachineConfig(virtualisation={"use_efi_boot": True, "efi": {"ovmf": str(ovmf), **efi}, **more})


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_uefi_maps_the_code_read_only_and_the_machines_store_writable(ovmf: Path) -> None:
    args = machine_argv("m1", uefi(ovmf), BOOT, PATHS, "tcg")
    assert args[args.index("-machine") : args.index("-machine") + 2] == ["-machine", "pc"]
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf}/OVMF_CODE_4M.fd" in args
    assert f"if=pflash,format=raw,unit=1,readonly=off,file={VARS}" in args
    assert "-bios" not in args and "-global" not in args
    assert after(args, "-kernel") == "/k/vmlinuz"  # OVMF starts the bzImage's EFI stub, not the PVH ELF


def test_secure_boot_is_the_smm_build_on_a_q35_with_smm(ovmf: Path) -> None:
    args = machine_argv("m1", uefi(ovmf, use_secure_boot=True), BOOT, PATHS, "tcg")
    i = args.index("-machine")
    assert args[i : i + 4] == ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]
    assert args.count("-machine") == 1
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf}/OVMF_CODE_4M.secboot.fd" in args
    # IDE disks of a q35 go on its AHCI ports, one each
    ide = machine_argv("m1", uefi(ovmf, use_secure_boot=True, qemu={"disk_interface": "ide"}), BOOT, PATHS, "tcg")
    assert "ide-hd,bus=ide.0,drive=root,serial=root,bootindex=1" in ide


def test_explicit_firmware_and_variables_win(ovmf: Path, tmp_path: Path) -> None:
    code, variables = tmp_path / "code.fd", tmp_path / "vars.fd"
    code.write_bytes(b"c")
    variables.write_bytes(b"v")
    config = uefi(ovmf, use_secure_boot=True, efi={"firmware": str(code), "variables": str(variables)})
    assert config.virtualisation.efi.files(True) == (str(code), str(variables))
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={code}" in firmware_args(config, BOOT)
    assert efivars.template(config) == variables


def test_a_uefi_command_line_needs_the_store() -> None:
    config = MachineConfig(virtualisation={"use_efi_boot": True})
    with pytest.raises(ValueError, match="variable store"):
        firmware_args(config, Boot(IMAGE.kernel, IMAGE.initrd))


def test_secure_boot_needs_uefi_as_the_seed_asserts() -> None:
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"use_secure_boot": True})
    assert info.value.field == "virtualisation.use_secure_boot"
    assert "use_efi_boot=True" in str(info.value)


def test_uefi_and_bios_exclude_each_other(ovmf: Path) -> None:
    with pytest.raises(ConfigError) as info:
        uefi(ovmf, bios=str(ovmf / "OVMF_CODE_4M.fd"))
    assert info.value.field == "virtualisation.bios"


def test_missing_ovmf_files_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"use_efi_boot": True, "efi": {"ovmf": str(tmp_path / "none")}})
    assert info.value.field == "virtualisation.efi.firmware"
    assert "apt-get install ovmf" in str(info.value)
    with pytest.raises(ConfigError) as info:
        uefi(tmp_path, efi={"variables": str(tmp_path / "nope.fd")})
    assert info.value.field in ("virtualisation.efi.firmware", "virtualisation.efi.variables")
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"efi": {"keep_varaibles": True}})
    assert "keep_variables" in str(info.value)


def test_without_uefi_the_efi_options_are_not_checked(tmp_path: Path) -> None:
    config = MachineConfig(virtualisation={"efi": {"ovmf": str(tmp_path / "none")}})
    assert "pflash" not in " ".join(firmware_args(config))


def test_where_the_store_lives(ovmf: Path, tmp_path: Path) -> None:
    state, kept = tmp_path / "state", tmp_path / "kept"
    assert efivars.store_path("m1", MachineConfig(), state, kept, {}) is None
    assert efivars.store_path("m1", uefi(ovmf), state, kept, {}) == state / "efi-vars.fd"
    keep = uefi(ovmf, efi={"keep_variables": True})
    assert efivars.store_path("m1", keep, state, kept, {}) == kept / "efi-vars.fd"
    assert efivars.store_path("m1", keep, state, None, {}) == state / "efi-vars.fd"  # nowhere to keep it
    env = {"VMTEST_EFI_VARS": "/var/tmp/{name}-vars.fd"}
    assert efivars.store_path("m1", keep, state, kept, env) == Path("/var/tmp/m1-vars.fd")


def test_the_store_is_a_writable_copy_made_once(ovmf: Path, tmp_path: Path) -> None:
    logger = logging.getLogger("test")
    store = tmp_path / "deep" / "efi-vars.fd"
    config = uefi(ovmf)
    (ovmf / "OVMF_VARS_4M.fd").chmod(0o444)
    efivars.prepare("m1", config, store, logger)
    assert store.read_bytes() == b"vars"
    assert stat.S_IMODE(store.stat().st_mode) == 0o644
    store.write_bytes(b"written by the guest")
    efivars.prepare("m1", config, store, logger)  # exists: kept
    assert store.read_bytes() == b"written by the guest"
    saved = tmp_path / "snapshot-vars.fd"
    saved.write_bytes(b"saved")
    efivars.prepare("m1", config, store, logger, source=saved)  # a restore: always the snapshot's
    assert store.read_bytes() == b"saved"
    assert list(store.parent.iterdir()) == [store]  # no temporary file left


def test_snapshots_of_uefi_machines(ovmf: Path, tmp_path: Path) -> None:
    config = uefi(ovmf)
    paths = MachinePaths(tmp_path)
    store = tmp_path / "efi-vars.fd"
    assert ineligible("m1", config, paths, store) is None
    store.write_bytes(b"kept")
    assert "UEFI variable store already exists" in (ineligible("m1", config, paths, store) or "")
    # the key has the firmware's digest (a UEFI machine's only) and the store's placeholder path
    argv = key_argv(config, IMAGE, "tcg", ())
    assert "if=pflash,format=raw,unit=1,readonly=off,file=/@state@/efi-vars.fd" in argv
    assert firmware_digest(MachineConfig()) == ""
    digest = firmware_digest(config)

    def key(firmware: str) -> str:
        return snapshot_key(argv, IMAGE.key, "q", "tcg", "", disk_sizes(config, IMAGE), "", firmware)

    (ovmf / "OVMF_CODE_4M.fd").write_bytes(b"upgraded code")
    assert firmware_digest(config) != digest
    assert key(digest) != key(firmware_digest(config))
    # a machine without UEFI keeps the key it had before firmware digests existed
    plain = key_argv(MachineConfig(), IMAGE, "tcg", ())
    assert snapshot_key(plain, "k", "q", "tcg") == snapshot_key(plain, "k", "q", "tcg", firmware="")


def test_run_vm_makes_the_store_where_vmtest_efi_vars_says(ovmf: Path) -> None:
    text = script("box", uefi(ovmf), IMAGE, "tcg")
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    assert 'EFI_VARS=$(readlink -f "${VMTEST_EFI_VARS:-./box-efi-vars.fd}")' in text
    assert f'cp {ovmf}/OVMF_VARS_4M.fd "$EFI_VARS"' in text
    assert 'if=pflash,format=raw,unit=1,readonly=off,file="$EFI_VARS"' in text


def test_doctor_names_each_missing_ovmf_file_and_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmtest.cli import doctor

    real = doctor.os.path.isfile
    monkeypatch.setattr(doctor.os.path, "isfile", lambda p: False if "/OVMF/" in str(p) else real(p))
    checks = [c for c in doctor.host_checks() if "/OVMF/" in c.name]
    assert [Path(c.name).name for c in checks] == [
        "OVMF_CODE_4M.fd",
        "OVMF_VARS_4M.fd",
        "OVMF_CODE_4M.secboot.fd",
        "OVMF_VARS_4M.ms.fd",
    ]
    text, ok = doctor.report(checks)
    assert not ok
    assert "[MISSING] /usr/share/OVMF/OVMF_CODE_4M.secboot.fd" in text
    assert "virtualisation.use_secure_boot)  -> fix: apt-get install -y ovmf" in text


def test_a_driver_without_nodes_as_vm_factory_makes_it() -> None:
    """(vm_factory's driver has no nodes and no VLANs: its temporary directory needs no socket room)"""
    from vmtest.net.driver import Driver

    driver = Driver({}, store=None)  # type: ignore[arg-type]
    try:
        assert driver.state_root.is_dir() and driver.machines == {}
    finally:
        driver.release()
