"""No QEMU survives the Python process that started it (SIGKILL included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path


def test_sigkill_of_pytest_leaves_no_qemu(tmp_path, processes_mentioning):
    """The victim has a TPM: its swtpm must go too."""
    name = f"victim{uuid.uuid4().hex[:8]}"
    test_file = tmp_path / "test_victim.py"
    test_file.write_text(
        "import time\nfrom vmtest import MachineConfig\n\n"
        "def test_victim(vm_factory):\n"
        f"    vm = vm_factory({name!r}, MachineConfig(virtualisation={{'tpm': {{'enable': True}}}}))\n"
        "    vm.succeed('true')\n"
        "    print('VM-UP', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", str(test_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    lines = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if "VM-UP" in line:
                break
        assert any("VM-UP" in line for line in lines), "".join(lines[-30:])
        qemus = list(processes_mentioning(f"process=vmtest-{name}"))
        assert len(qemus) == 1
        swtpms = [cmd for cmd in processes_mentioning(f"/{name}/").values() if cmd.startswith("swtpm ")]
        assert len(swtpms) == 1, swtpms
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # also when an assertion failed: the victim must not linger
        proc.wait()
    deadline = time.monotonic() + 10
    while list(processes_mentioning(name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(processes_mentioning(name)) == []  # neither QEMU nor swtpm


import pytest  # noqa: E402

TWO_NODE_TEST = """
import time
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"a": MachineConfig(), "b": MachineConfig()})
def test_two(vms, a, b):
    vms.start_all()
    vms.join_all()
    print("VMS-UP", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize(
    ("sig", "extra"),
    [(signal.SIGINT, []), (signal.SIGKILL, []), (signal.SIGINT, ["--vm-record"])],
    ids=["sigint", "sigkill", "sigint-while-recording"],  # the recording thread must not delay Ctrl-C
)
def test_interrupting_a_two_vm_test_leaves_no_qemu_or_switch(tmp_path, sig, extra, processes_mentioning, short_tmpdir):
    (tmp_path / "test_two.py").write_text(TWO_NODE_TEST)
    state = short_tmpdir
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "test_two.py", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        env=dict(os.environ, TMPDIR=str(state)),
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "VMS-UP" in line:
            break
    assert any("VMS-UP" in line for line in lines), "".join(lines[-30:])
    mine = list(processes_mentioning(str(state)))
    kinds = {Path(f"/proc/{pid}/exe").resolve().name for pid in mine if Path(f"/proc/{pid}").exists()}
    assert {"qemu-system-x86_64", "vde_switch"} <= kinds, kinds
    os.kill(proc.pid, sig)
    interrupted = time.monotonic()
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if extra:
        assert time.monotonic() - interrupted < 30, "Ctrl-C took too long while recording"
    deadline = time.monotonic() + 15
    while list(processes_mentioning(str(state))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(processes_mentioning(str(state))) == []
    if sig == signal.SIGKILL:  # a killed run cannot clean up: its state directory stays, naming its owner
        assert [p.name for p in state.glob("vmtest-net-*/.vmtest-owner")], list(state.iterdir())
    assert next_run_leaves_no_state(tmp_path, state) == []


def next_run_leaves_no_state(tmp_path: Path, state: Path) -> list[str]:
    """Run a trivial pytest session on this host (same TMPDIR); return the vmtest state left after it."""
    (tmp_path / "test_next.py").write_text("def test_nothing():\n    assert True\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_next.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, TMPDIR=str(state)),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return sorted(p.name for p in state.iterdir() if p.name.startswith("vmtest-"))


XDIST_TEST = """
import os, time
from pathlib import Path
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"a": MachineConfig(), "b": MachineConfig()})
def test_two(vms, a, b):
    vms.start_all()
    vms.join_all()
    Path(os.environ["VMS_UP_MARKER"]).write_text("up")
    time.sleep(600)
"""


def test_sigkill_of_an_xdist_worker_leaves_no_qemu_or_switch(tmp_path, processes_mentioning, short_tmpdir):
    (tmp_path / "test_two.py").write_text(XDIST_TEST)
    state = short_tmpdir
    marker = tmp_path / "vms-up"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "1", "-q", "-p", "no:cacheprovider", "test_two.py"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        env=dict(os.environ, TMPDIR=str(state), VMS_UP_MARKER=str(marker)),
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert marker.exists(), proc.communicate(timeout=30)[0][-3000:] if proc.poll() is not None else "not up"
        mine = processes_mentioning(str(state))
        qemus = [pid for pid in mine if Path(f"/proc/{pid}/exe").resolve().name == "qemu-system-x86_64"]
        assert len(qemus) == 2, mine
        # the worker is the QEMUs' parent (the xdist controller is our child `proc`)
        worker = int(Path(f"/proc/{qemus[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert worker != proc.pid
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while processes_mentioning(str(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(str(state)) == {}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert next_run_leaves_no_state(tmp_path, state) == []
