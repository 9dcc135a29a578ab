"""Alternate firmware and the software TPM on QEMU's and swtpm's command lines (pure; no QEMU)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError, LaunchError
from vmtest.vm.argv import Boot, machine_argv
from vmtest.vm.paths import MachinePaths
from vmtest.vm.snapshot import ineligible, snapshot_key
from vmtest.vm.tpm import Swtpm, identity, swtpm_argv

PVH = Boot(kernel=Path("/cache/kernels/k1/vmlinux"), initrd=Path("/cache/kernels/k1/initrd"))
PATHS = MachinePaths(Path("/run/vmtest/m1"))
QBOOT = "/usr/share/qemu/qboot.rom"


def argv(**virt: object) -> list[str]:
    return machine_argv("m1", MachineConfig(virtualisation=virt), PVH, PATHS, "tcg")


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_default_has_no_firmware_or_tpm_and_a_generation_id() -> None:
    args = argv()
    assert "-bios" not in args and "-tpmdev" not in args
    assert after(args, "-kernel") == "/cache/kernels/k1/vmlinux"
    assert "vmgenid,guid=auto" in args


def test_bios_replaces_seabios_and_drops_the_generation_id(tmp_path: Path) -> None:
    rom = tmp_path / "fw.rom"
    rom.write_bytes(b"x")
    args = argv(bios=str(rom))
    assert after(args, "-bios") == str(rom)
    assert "vmgenid,guid=auto" not in args  # qboot hangs on it; such a machine is never restored


def test_bios_must_exist() -> None:
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"bios": "/nonexistent/qboot.rom"})
    assert info.value.field == "virtualisation.bios"


@pytest.mark.parametrize("model", ["tpm-tis", "tpm-crb"])
def test_tpm_device_on_swtpms_socket_and_bzimage(model: str) -> None:
    args = argv(tpm={"enable": True, "device_model": model})
    i = args.index("-tpmdev")
    assert args[i - 2 : i + 4] == [
        "-chardev",
        "socket,id=chrtpm,path=/run/vmtest/m1/swtpm.sock",
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        f"{model},tpmdev=tpm0",
    ]
    assert after(args, "-kernel") == "/cache/kernels/k1/vmlinuz"  # not PVH: see argv.direct_kernel


def test_tpm_options_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"tpm": {"enable": True, "device_model": "tpm-tiss"}})
    assert info.value.field == "virtualisation.tpm.device_model"
    assert "tpm-tis" in str(info.value)
    with pytest.raises(ConfigError) as info:
        MachineConfig(virtualisation={"tpm": {"enabled": True}})
    assert "enable" in str(info.value)


def test_swtpm_argv() -> None:
    tpm = MachineConfig(virtualisation={"tpm": {"enable": True, "package": "/opt/swtpm"}}).virtualisation.tpm
    assert swtpm_argv(tpm, PATHS) == [
        "/opt/swtpm",
        "socket",
        "--tpm2",
        "--tpmstate",
        "dir=/run/vmtest/m1/tpm",
        "--ctrl",
        "type=unixio,path=/run/vmtest/m1/swtpm.sock",
        "--terminate",
        "--log",
        "file=/run/vmtest/m1/tpm/swtpm.log,level=1",
    ]


def test_firmware_machines_are_never_snapshotted_tpm_machines_unless_their_tpm_has_state(tmp_path: Path) -> None:
    paths = MachinePaths(tmp_path)
    assert ineligible("m1", MachineConfig(), paths) is None
    tpm = MachineConfig(virtualisation={"tpm": {"enable": True}})
    assert ineligible("m1", tpm, paths) is None  # a snapshot holds the TPM's state
    paths.tpm_state.mkdir(parents=True)
    (paths.tpm_state / "swtpm.log").write_text("")
    assert ineligible("m1", tpm, paths) is None  # a log is no state
    (paths.tpm_state / "tpm2-00.permall").write_bytes(b"x")  # kept (--vm-keep-state), or a restart
    assert "TPM's state already exists" in (ineligible("m1", tpm, paths) or "")
    assert ineligible("m1", MachineConfig(), paths) is None  # (no TPM: its state is not looked at)
    rom = tmp_path / "fw.rom"
    rom.write_bytes(b"x")
    assert "bios" in (ineligible("m1", MachineConfig(virtualisation={"bios": str(rom)}), paths) or "")


def test_provisioning_runs_once_on_a_new_state_and_its_failure_names_the_option(tmp_path: Path) -> None:
    logger = logging.getLogger("test")
    paths = MachinePaths(tmp_path)
    cmd = 'echo x >> "$TPM_STATE_DIR/ran"'
    tpm = MachineConfig(virtualisation={"tpm": {"enable": True, "provisioning": cmd}}).virtualisation.tpm
    Swtpm("m1", tpm, paths, logger).provision()
    Swtpm("m1", tpm, paths, logger).provision()  # the state exists: not again
    assert (paths.tpm_state / "ran").read_text() == "x\n"
    bad = MachineConfig(virtualisation={"tpm": {"enable": True, "provisioning": "exit 3"}}).virtualisation.tpm
    with pytest.raises(LaunchError) as info:
        Swtpm("m2", bad, MachinePaths(tmp_path / "other"), logger).provision()
    assert "virtualisation.tpm.provisioning" in str(info.value) and "exit status 3" in str(info.value)
    assert not (tmp_path / "other" / "tpm" / ".vmtest-provisioned").exists()  # tried again next start


def test_the_tpm_in_a_snapshots_key_is_swtpms_version_and_the_provisioning(tmp_path: Path) -> None:
    assert identity(MachineConfig().virtualisation.tpm) == ""  # (the keys of machines without one stay as they were)
    plain = identity(MachineConfig(virtualisation={"tpm": {"enable": True}}).virtualisation.tpm)
    provisioned = identity(
        MachineConfig(
            virtualisation={"tpm": {"enable": True, "provisioning": "swtpm_setup --createek"}}
        ).virtualisation.tpm
    )
    assert plain.startswith("swtpm ") and plain != provisioned and "swtpm_setup --createek" in provisioned
    fake = tmp_path / "swtpm"
    fake.write_text("#!/bin/sh\necho 'TPM emulator version 9.9.9'\n")
    fake.chmod(0o755)
    other = identity(MachineConfig(virtualisation={"tpm": {"enable": True, "package": str(fake)}}).virtualisation.tpm)
    assert other == "swtpm TPM emulator version 9.9.9\nprovisioning None"
    missing = MachineConfig(virtualisation={"tpm": {"enable": True, "package": str(tmp_path / "none")}})
    assert identity(missing.virtualisation.tpm).startswith("swtpm unknown (")
    assert snapshot_key(["a"], "k", "q", "tcg", tpm=plain) != snapshot_key(["a"], "k", "q", "tcg", tpm=provisioned)
    assert snapshot_key(["a"], "k", "q", "tcg") == snapshot_key(["a"], "k", "q", "tcg", tpm="")


@pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm is not installed (apt-get install swtpm)")
def test_a_restores_swtpm_starts_on_an_empty_state_and_skips_the_provisioning(tmp_path: Path) -> None:
    logger = logging.getLogger("test")
    paths = MachinePaths(tmp_path)
    cmd = 'echo x >> "$TPM_STATE_DIR/ran"'
    tpm = MachineConfig(virtualisation={"tpm": {"enable": True, "provisioning": cmd}}).virtualisation.tpm
    paths.tpm_state.mkdir(parents=True)
    (paths.tpm_state / "tpm2-00.permall").write_bytes(b"an earlier launch's")
    swtpm = Swtpm("m1", tpm, paths, logger)
    swtpm.start(provision=False, fresh=True)  # a restore: QEMU hands swtpm the saved state
    try:
        assert swtpm.process is not None and swtpm.process.poll() is None
        assert not (paths.tpm_state / "tpm2-00.permall").exists()
        assert not (paths.tpm_state / "ran").exists() and (paths.tpm_state / ".vmtest-provisioned").exists()
    finally:
        swtpm.stop()
    swtpm.start(fresh=True)  # the boot that replaces a dropped restore: a new state, provisioned
    swtpm.stop()
    assert (paths.tpm_state / "ran").read_text() == "x\n"
    swtpm.start()  # a restart on that state: kept as it is
    swtpm.stop()
    assert (paths.tpm_state / "ran").read_text() == "x\n"
