"""`vmtest run-vm`: the interactive machine and its standalone start script, booted for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect
import pytest

REPO = Path(__file__).resolve().parents[2]
PROMPT = r"root@box[^\r\n]*# "

CONFIG_FILE = """
from vmtest import MachineConfig
box = MachineConfig(virtualisation={"empty_disk_images": [16], "memory_size": 512})
"""


@pytest.fixture
def box(tmp_path: Path) -> str:
    path = tmp_path / "machines.py"
    path.write_text(CONFIG_FILE)
    return f"{path}::box"


def _spawn(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        cwd=str(cwd),
        env=dict(os.environ, **(env or {})),
        encoding="utf-8",
        codec_errors="replace",
        timeout=180,
        dimensions=(50, 200),
    )
    child.logfile_read = open(cwd / "console.log", "w")  # noqa: SIM115 - closed with the child
    return child


def _stop(child: pexpect.spawn) -> None:
    if child.isalive():
        os.killpg(child.pid, signal.SIGKILL)  # pexpect's child leads its own session
        child.wait()


def test_print_script_runs_under_sh_and_honours_the_environment(box: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vmtest.cli", "run-vm", "--print-script", box],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    script = tmp_path / "run-box-vm"
    script.write_text(out.stdout)
    assert out.stdout.startswith("#!/bin/sh\n") and "$QEMU_OPTS" in out.stdout
    state = tmp_path / "state"
    state.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("from SHARED_DIR\n")
    child = _spawn(
        ["sh", str(script)],
        tmp_path,
        env={
            "QEMU_OPTS": "-smbios type=1,serial=from-qemu-opts",
            "QEMU_KERNEL_PARAMS": "vmtest.marker=kp42 loglevel=1",  # no kernel lines amid the shell's
            "QEMU_NET_OPTS": "hostname=ignored-by-guest",
            "TMPDIR": str(state),
            "USE_TMPDIR": "1",
            "SHARED_DIR": str(shared),
            "VMTEST_DISK_IMAGE": str(tmp_path / "my-root.qcow2"),
        },
    )
    try:
        child.expect(PROMPT)
        child.sendline("echo SERIAL=$(cat /sys/class/dmi/id/product_serial)")
        child.expect(r"SERIAL=([a-z0-9-]+)\s")
        assert child.match.group(1) == "from-qemu-opts"
        child.sendline("grep -o vmtest.marker=kp42 /proc/cmdline && cat /tmp/shared/hello.txt")
        child.expect("from SHARED_DIR")
        child.sendline("echo EMPTY=$(blockdev --getsize64 /dev/vdb)=")
        child.expect(r"EMPTY=(\d+)=")
        assert int(child.match.group(1)) == 16 << 20
        child.sendline("poweroff")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        _stop(child)
    assert (tmp_path / "my-root.qcow2").is_file()  # VMTEST_DISK_IMAGE honoured
    assert (state / "empty0.qcow2").is_file() and (state / "xchg").is_dir()  # TMPDIR + USE_TMPDIR honoured


def test_run_vm_keeps_state_in_the_current_directory(box: str, tmp_path: Path) -> None:
    vmtest = str(Path(sys.executable).with_name("vmtest"))
    temporary = set(Path(tempfile.gettempdir()).glob("vmtest-box.*"))
    child = _spawn([vmtest, "run-vm", box], tmp_path)
    try:
        child.expect(PROMPT)
        child.sendline("echo kept > /root/state-file; sync")
        child.expect(PROMPT)
        child.send("\x01x")  # Ctrl-A X: quit QEMU
        child.expect(pexpect.EOF, timeout=60)
    finally:
        _stop(child)
    assert (tmp_path / "box.qcow2").is_file()
    # loglevel=1: no kernel lines in the middle of the shell's output on the serial console
    child = _spawn([vmtest, "run-vm", box], tmp_path, env={"QEMU_KERNEL_PARAMS": "loglevel=1"})
    try:
        child.expect(PROMPT)
        child.sendline("echo GOT=$(cat /root/state-file)=")
        child.expect(r"GOT=(\w+)=")
        assert child.match.group(1) == "kept"
        child.sendline("poweroff")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        _stop(child)
    # The script's own temporary directory (no TMPDIR + USE_TMPDIR given) went with it.
    assert set(Path(tempfile.gettempdir()).glob("vmtest-box.*")) == temporary
