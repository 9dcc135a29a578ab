"""No QEMU survives the Python process that started it (SIGKILL included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path


def _pids_with(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_sigkill_of_pytest_leaves_no_qemu(tmp_path):
    name = f"victim{uuid.uuid4().hex[:8]}"
    test_file = tmp_path / "test_victim.py"
    test_file.write_text(
        "import time\nfrom vmtest import MachineConfig\n\n"
        "def test_victim(vm_factory):\n"
        f"    vm = vm_factory({name!r}, MachineConfig())\n"
        "    vm.succeed('true')\n"
        "    print('VM-UP', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", str(test_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=tmp_path,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "VM-UP" in line:
            break
    assert any("VM-UP" in line for line in lines), "".join(lines[-30:])
    qemus = _pids_with(f"process=vmtest-{name}")
    assert len(qemus) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _pids_with(f"process=vmtest-{name}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids_with(f"process=vmtest-{name}") == []
