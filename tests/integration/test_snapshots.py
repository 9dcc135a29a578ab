"""Booted snapshots on real guests: what a restored machine must get right, and the faults.

A snapshot is per machine identity (name, addresses): the first start of a name saves it and goes on
running; later starts of that name restore it. The tests of what a restored guest gets right use configs
of their own that stay the same from run to run: their first start restores a snapshot an earlier run
saved (or saves it, on a new host), and the starts they check come after it, restores for sure. The tests
of the save itself (and of snapshots off) carry a nonce kernel parameter, so their snapshots are this
run's own (the image is shared: kernel parameters are not in the image key).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmtest import Machine, MachineConfig, State
from vmtest.vm.restore import Restore, SaveSnapshot

REPO = Path(__file__).resolve().parents[2]


def fresh(nonce: str, **kwargs) -> MachineConfig:  # noqa: ANN003
    return MachineConfig(kernel_params=[f"vmtest.snaptest={nonce}"], **kwargs)


def stable(**kwargs) -> MachineConfig:  # noqa: ANN003
    """A config whose snapshot outlives the run (see the module's docstring)."""
    return MachineConfig(**kwargs)


def restored(machine) -> bool:  # noqa: ANN001
    return isinstance(machine.vm.start_path, Restore)


def saved(machine) -> bool:  # noqa: ANN001
    return isinstance(machine.vm.start_path, SaveSnapshot) and machine.vm.start_path.saved is not None


def test_restored_clock_rng_and_console(vm_image_store):
    cfg = stable()
    reads = []
    for i in range(3):  # the first restores the snapshot or saves it, the others restore it
        vm = Machine("twin", cfg, store=vm_image_store, snapshots=True)
        try:
            vm.connect()
            assert (saved(vm) or restored(vm)) if i == 0 else restored(vm)
            assert vm.state is State.READY
            guest = float(vm.succeed("date +%s.%N"))
            assert abs(guest - time.time()) < 2, (i, guest, time.time())
            assert vm.succeed("hostname").strip() == "twin"
            reads.append(vm.succeed("head -c 32 /dev/urandom | od -An -tx1"))
            if i:
                assert "virtual machine fork" in vm.succeed("dmesg")  # vmgenid: the kernel reseeded its RNG
                # The console holds the boot that made the snapshot, as after a real boot.
                assert "Linux version" in vm.get_console_log()
                vm.wait_for_console_text("Linux version", timeout=5)
        finally:
            vm.release()
    assert reads[1] != reads[2], "two restores of one snapshot share a random stream"


def test_a_file_written_in_one_test(vm_factory):
    vm = vm_factory("leak", stable())
    vm.succeed("echo left-behind > /root/leftover && sync")
    assert saved(vm) or restored(vm)


def test_is_absent_in_the_next(vm_factory):
    vm = vm_factory("leak", stable())
    vm.connect()
    assert restored(vm)
    vm.fail("test -e /root/leftover")


# Stable: the first round restores the snapshots an earlier run saved (new switches, new sockets), or on a new
# host saves them and goes on on the same network; the second round restores this run's, for sure.
NODES = {"left": stable(), "right": stable()}


@pytest.mark.parametrize("round", ["first", "restores"])
@pytest.mark.vmtest(nodes=NODES)
def test_vlan_traffic_between_restored_nodes(vms, left, right, round):
    vms.start_all()
    vms.join_all()
    for node in (left, right):
        assert restored(node) if round == "restores" else (saved(node) or restored(node))
    right.succeed("(nc -N -l 7777 > /tmp/got </dev/null &)")
    right.wait_for_open_port(7777, timeout=60)  # listening (a fixed sleep raced a slow guest); not consumed
    left.succeed("echo over-the-vlan | nc -N -w 5 right 7777")
    right.wait_until_succeeds("grep -q over-the-vlan /tmp/got", timeout=30)
    assert left.succeed("ip -4 -o addr show eth1").split()[3] == "192.168.1.1/24"


def test_shares_and_copies_on_a_restored_guest(vm_image_store, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "note").write_text("from the host share\n")
    # (the share's host directory is this run's own: it is not in the snapshot's key)
    cfg = stable(virtualisation={"shared_directories": {"data": {"source": str(share), "target": "/mnt/data"}}})
    for i in range(2):
        vm = Machine("shares", cfg, store=vm_image_store, snapshots=True, state_dir=tmp_path / f"state{i}")
        try:
            vm.connect()
            assert (saved(vm) or restored(vm)) if i == 0 else restored(vm)
            assert vm.succeed("cat /mnt/data/note") == "from the host share\n"
            (tmp_path / "in").write_text(f"copied in {i}\n")
            vm.copy_from_host(tmp_path / "in", "/root/in")
            assert vm.succeed("cat /root/in") == f"copied in {i}\n"
            out = vm.copy_from_machine("/etc/hostname", tmp_path / f"out{i}")
            assert out.read_text() == "shares\n"
            (vm.shared_dir / "xchg-file").write_text("via xchg\n")
            assert vm.succeed("cat /tmp/xchg/xchg-file") == "via xchg\n"
            # the boot goes on after a restore: systemd-tmpfiles may delete the (then empty) mount point
            vm.succeed("umount /tmp/xchg && rmdir /tmp/xchg")
            vm.copy_from_host(tmp_path / "in", "/root/in-again")
            assert vm.succeed("cat /root/in-again /tmp/xchg/xchg-file") == f"copied in {i}\nvia xchg\n"
        finally:
            vm.release()


def test_screen_and_ocr_on_a_restored_guest(vm_image_store):
    for i in range(2):
        vm = Machine("screen", stable(), store=vm_image_store, snapshots=True)
        try:
            vm.connect()
            assert (saved(vm) or restored(vm)) if i == 0 else restored(vm)
            assert "screen login:" in vm.wait_for_text("screen login:", timeout=60)  # getty saw the name at boot
            vm.succeed(f"printf '\\033[2J\\033[Hrestored-screen-424{i}\\n' > /dev/tty1")
            assert f"restored-screen-424{i}" in vm.wait_for_text(f"restored-screen-424{i}", timeout=60)
        finally:
            vm.release()


def test_snapshots_off_boots_for_real(vm_factory, nonce):
    vm = vm_factory("real", fresh(nonce), snapshots=False)
    vm.connect()
    assert vm.vm.start_path.name == "cold boot"
    assert vm.succeed("hostname").strip() == "real"


@pytest.mark.vmtest(snapshots=False)  # a marker with settings alone: this vm_factory test's machines boot for real
def test_a_markers_snapshots_false_holds_for_vm_factory_machines(vm_factory, nonce):
    vm = vm_factory("marked", fresh(nonce))  # a new configuration: with snapshots on it would boot and save
    vm.connect()
    assert vm.vm.start_path.name == "cold boot"


def test_a_corrupted_snapshot_is_dropped_and_the_machine_boots_cold_saving_it_anew(vm_image_store, vm_factory, caplog):
    cfg = stable()
    first = Machine("corrupt", cfg, store=vm_image_store, snapshots=True)
    try:
        first.connect()
        assert saved(first) or restored(first)
        snapshot = first.vm.start_path.saved if saved(first) else first.vm.start_path.snapshot
    finally:
        first.release()
    with open(snapshot.state, "r+b") as fh:  # truncated, as by a full disk or a killed copy
        fh.truncate(snapshot.state.stat().st_size // 3)
    truncated = snapshot.state.stat().st_size
    caplog.clear()
    second = vm_factory("corrupt", cfg)
    assert second.succeed("hostname").strip() == "corrupt"
    assert saved(second)  # it booted, and saved a good snapshot in place of the bad one
    lines = [r.getMessage() for r in caplog.records if "could not be restored" in r.getMessage()]
    assert len(lines) == 1 and snapshot.key[:12] in lines[0], lines
    assert second.vm.start_path.saved.key == snapshot.key
    assert snapshot.state.stat().st_size > truncated
    second.release()
    third = Machine("corrupt", cfg, store=vm_image_store, snapshots=True)
    try:
        third.connect()
        assert restored(third)
    finally:
        third.release()


KILLED = """
import sys
from vmtest import Machine, MachineConfig
m = Machine("victim", MachineConfig(kernel_params=["vmtest.snaptest=" + sys.argv[1]]), snapshots=True)
m.succeed("true")
"""


def victim_reservations(pid: int, cache_root: Path) -> list[str]:
    """The keys of the snapshots process ``pid`` holds the lock of (its open ``locks/snapshots-<key>.lock``)."""
    keys = []
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.parent == (cache_root / "locks").resolve() and target.name.startswith("snapshots-"):
            keys.append(target.name.removeprefix("snapshots-").removesuffix(".lock"))
    return keys


def test_sigkill_during_a_save_leaves_nothing_that_looks_complete(tmp_path, nonce, vm_image_store, vm_factory):
    cache = vm_image_store.cache
    script = tmp_path / "victim.py"
    script.write_text(KILLED)
    env = dict(os.environ, VMTEST_CACHE_DIR=str(cache.root))
    proc = subprocess.Popen(
        [sys.executable, str(script), nonce],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # until the victim's migration stream is being written
            # (the victim's own save: other workers of this suite may be saving other snapshots meanwhile)
            keys = victim_reservations(proc.pid, cache.root)
            partial = [p for k in keys for p in (cache.root / "tmp").glob(f"snapshots-{k}.*") if (p / "state").exists()]
            if partial:
                break
            assert proc.poll() is None, "the victim ended before saving"
            time.sleep(0.02)
        else:
            pytest.fail("no snapshot save started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    key = partial[0].name.split(".")[0].removeprefix("snapshots-")
    assert not (cache.root / "snapshots" / key).exists()
    # The next start of that machine saves a complete one.
    vm = vm_factory("victim", MachineConfig(kernel_params=[f"vmtest.snaptest={nonce}"]))
    vm.connect()
    assert saved(vm) and vm.vm.start_path.saved.key == key
