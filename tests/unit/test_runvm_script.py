"""The run-vm start script's pure parts: shell words and the interactive argv."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vmtest import MachineConfig
from vmtest.cli.runvm import interactive_argv, script, sh_word
from vmtest.image import BootImage

IMAGE = BootImage(
    key="k",
    disk=Path("/c/img/root.qcow2"),
    kernel=Path("/c/k/vmlinux"),
    initrd=Path("/c/k/initrd"),
    kernel_release="6.1",
    disk_mib=1024,
)


def _sh_eval(word: str, **env: str) -> str:
    out = subprocess.run(["sh", "-c", f"printf '%s' {word}"], env=env, capture_output=True, text=True, check=True)
    return out.stdout


def test_sh_word_quotes_and_expands_placeholders() -> None:
    assert _sh_eval(sh_word("a b'c")) == "a b'c"
    assert _sh_eval(sh_word("path=@TMPDIR@/q.sock"), TMPDIR="/t m p") == "path=/t m p/q.sock"
    assert _sh_eval(sh_word("x@KPARAMS@")) == "x"
    assert _sh_eval(sh_word("x@KPARAMS@"), QEMU_KERNEL_PARAMS="a=1 b") == "x a=1 b"
    assert _sh_eval(sh_word("user,id=u@NETOPTS@"), QEMU_NET_OPTS="hostfwd=tcp::2-:22") == "user,id=u,hostfwd=tcp::2-:22"
    assert _sh_eval(sh_word("")) == ""


def test_interactive_argv() -> None:
    argv = interactive_argv("box", MachineConfig(), IMAGE, "tcg")
    assert "-S" not in argv
    assert argv[argv.index("-serial") + 1] == "mon:stdio"
    assert not any(a.startswith("socket,id=serial0") for a in argv)
    assert argv[argv.index("-append") + 1].endswith(" vmtest.interactive@KPARAMS@")
    assert "user,id=user0,net=10.0.2.0/24,restrict=on@NETOPTS@" in argv
    assert "file=@DISK@,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report" in argv
    assert "local,id=fs-shared,path=@SHARED@,security_model=none" in argv
    assert "virtio-9p-pci,fsdev=fs-shared,mount_tag=shared" in argv


def test_script_is_valid_shell_with_the_seed_variables() -> None:
    text = script("box", MachineConfig(virtualisation={"empty_disk_images": [8], "disk_size": 2048}), IMAGE, "tcg")
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    for needle in (
        "${VMTEST_DISK_IMAGE:-./box.qcow2}",
        '[ -z "$USE_TMPDIR" ]',
        "test -e empty0.qcow2 ||",
        '$QEMU_OPTS "$@"',
        'resize2fs "$root_dev"',
        "2048M",
        "${SHARED_DIR:-$TMPDIR/xchg}",
    ):
        assert needle in text, needle


def test_script_without_a_persistent_disk() -> None:
    text = script("box", MachineConfig(virtualisation={"disk_image": None}), IMAGE, "tcg")
    assert "VMTEST_DISK_IMAGE" not in text.split("set -e", 1)[1]
    assert "file=/c/img/root.qcow2,format=qcow2,if=none,id=root,snapshot=on" in text


def test_a_boot_loader_machine_gets_its_command_line_through_smbios_in_run_vm() -> None:
    config = MachineConfig(virtualisation={"use_boot_loader": True})
    argv = interactive_argv("box", config, IMAGE, "tcg")
    assert "-kernel" not in argv and argv[-2] == "-smbios"
    assert argv[-1].startswith("type=11,value=0 root=LABEL=vmtest-root ") and argv[-1].endswith("@KPARAMS@")
    assert _sh_eval(sh_word(argv[-1]), QEMU_KERNEL_PARAMS="debug").endswith(" debug")
    assert "mount -t vfat" not in script("box", config, IMAGE, "tcg")  # no boot partition without EFI/BIOS boot
