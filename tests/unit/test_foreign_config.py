"""Foreign images: the declaration (validation, clear errors) and QEMU's command line for them (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest import ConfigError, ForeignImage, MachineConfig
from vmtest.vm.argv import Launch
from vmtest.vm.foreign import foreign_argv
from vmtest.vm.paths import MachinePaths


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    path.write_bytes(b"QFI\xfb" + bytes(60))
    return path


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(512))
    return path


def test_format_detection(qcow2: Path, raw: Path) -> None:
    assert ForeignImage(path=str(qcow2)).disk_format() == "qcow2"
    assert ForeignImage(path=str(raw)).disk_format() == "raw"
    assert ForeignImage(path=str(raw), format="qcow2").disk_format() == "qcow2"


def test_a_path_a_dict_or_the_record(qcow2: Path) -> None:
    assert MachineConfig(image=str(qcow2)).image == ForeignImage(path=str(qcow2))
    assert MachineConfig(image={"path": str(qcow2), "password": "pw"}).image == ForeignImage(
        path=str(qcow2), password="pw"
    )
    assert MachineConfig().image is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({"path": "/nonexistent/disk.qcow2"}, r"image\.path='/nonexistent/disk.qcow2': no such file on the host"),
        ({"path": "QCOW", "format": "vmdk"}, r"image\.format='vmdk': must be one of 'auto', 'qcow2', 'raw'"),
        ({"path": "QCOW", "shell": "ssh"}, r"image\.shell='ssh': must be one of 'serial', 'none'"),
        ({"path": "QCOW", "shell_prompt": "[unclosed"}, r"image\.shell_prompt=.*not a valid regular expression"),
        ({"path": "QCOW", "initrd": "QCOW"}, r"image\.initrd=.*only used with kernel="),
        ({}, r"neither a disk image \(path\) nor a kernel"),
        ({"path": "QCOW", "pasword": "x"}, r"image\.pasword.*unknown option.*did you mean 'password'"),
        (42, r"image=42: expected a vmtest.ForeignImage"),
    ],
)
def test_bad_input_names_the_option(qcow2: Path, image: object, message: str) -> None:
    if isinstance(image, dict):
        image = {k: (str(qcow2) if v == "QCOW" else v) for k, v in image.items()}
    with pytest.raises(ConfigError, match=message):
        MachineConfig(image=image)


def test_nothing_is_built_into_a_foreign_image(qcow2: Path) -> None:
    with pytest.raises(ConfigError, match=r"packages=.*vmtest builds nothing into it"):
        MachineConfig(image=str(qcow2), packages=["curl"])


def test_argv_boots_the_disk_through_its_overlay(qcow2: Path, tmp_path: Path) -> None:
    config = MachineConfig(image=str(qcow2))
    paths = MachinePaths(tmp_path / "state")
    argv = foreign_argv("m", config, paths, "tcg", Launch())
    joined = " ".join(argv)
    assert f"file={tmp_path}/state/m.qcow2,format=qcow2" in joined  # the overlay, never the image itself
    assert "bootindex=1" in joined
    assert "-kernel" not in argv and "virtconsole" not in joined and "backdoor" not in joined and "9p" not in joined
    assert f"path={paths.serial}" in joined and "-S" in argv


def test_argv_direct_boot_and_no_persistent_disk(qcow2: Path, raw: Path, tmp_path: Path) -> None:
    config = MachineConfig(
        image={"path": str(raw), "kernel": str(qcow2), "initrd": str(qcow2)},
        kernel_params="root=/dev/vda console=ttyS0",
        virtualisation={"disk_image": None},
    )
    argv = foreign_argv("m", config, MachinePaths(tmp_path), "tcg", Launch(paused=False))
    assert argv[argv.index("-kernel") + 1] == str(qcow2)
    assert argv[argv.index("-append") + 1] == "root=/dev/vda console=ttyS0"  # the given command line alone
    drive = argv[argv.index("-drive") + 1]
    assert f"file={raw}" in drive and "format=raw" in drive and "snapshot=on" in drive
    assert "-S" not in argv


def test_no_disk_at_all(qcow2: Path, tmp_path: Path) -> None:
    config = MachineConfig(image={"kernel": str(qcow2), "shell": "none"})
    argv = foreign_argv("m", config, MachinePaths(tmp_path), "tcg", Launch())
    assert "-drive" not in argv


@pytest.mark.parametrize(
    ("option", "value", "fix"),
    [
        ("shared_directories", {"x": {"source": "/tmp", "target": "/mnt"}}, "mount the 9p share"),
        ("use_host_certs", True, "copy_from_host"),
        ("disk_size", 4096, "qemu-img resize"),
    ],
)
def test_options_that_need_vmtests_guest_are_errors(qcow2: Path, option: str, value: object, fix: str) -> None:
    with pytest.raises(ConfigError, match=rf"virtualisation\.{option}=.*needs vmtest's own guest image.*{fix}"):
        MachineConfig(image=str(qcow2), virtualisation={option: value})
    MachineConfig(image=str(qcow2), virtualisation={"memory_size": 512, "vlans": [1, 2]})  # these work
