"""Faults get fast, named errors: QEMU killed, a guest that stops answering, a kernel panic, a full disk
during an image build, a misspelt package. Each test prints its time to error (``-s`` shows them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import seed_base_layer
from vmtest import MachineConfig
from vmtest.core.errors import ConfigError, ImageBuildError, LaunchError, Timeout
from vmtest.image import ImageStore, space


def report(what: str, seconds: float) -> None:
    print(f"\nFAULT {what}: error after {seconds:.1f}s", flush=True)


def test_qemu_killed_during_a_command_fails_within_5s_naming_the_signal(vm_factory) -> None:
    machine = vm_factory("victim", MachineConfig())
    machine.succeed("true")
    assert machine.vm.process is not None
    pid = machine.vm.process.pid
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(2)
        killed_at.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()
    with pytest.raises(LaunchError) as info:
        machine.execute("sleep 300", timeout=600)
    took = time.monotonic() - killed_at[0]
    report("QEMU SIGKILL during a command", took)
    assert took < 5, took
    assert "QEMU was killed by SIGKILL" in str(info.value)
    assert info.value.status == -signal.SIGKILL


def test_a_guest_that_stops_answering_is_a_timeout_naming_it(vm_factory) -> None:
    machine = vm_factory("frozen", MachineConfig())
    machine.succeed("true")
    start = time.monotonic()
    with pytest.raises(Timeout) as info:
        machine.execute("systemctl kill --signal=SIGSTOP vmtest-backdoor.service; sleep 1", timeout=8)
    took = time.monotonic() - start
    report("backdoor stopped (SIGSTOP)", took)
    text = str(info.value)
    assert "the guest stopped answering" in text
    assert "--- last console lines ---" in text
    assert machine.vm.is_running()  # QEMU itself is fine: the guest stopped answering
    assert took < 8 + 10 + 5, took  # the command's timeout, the kill grace, slack


def test_a_kernel_panic_is_quoted_at_once(vm_factory) -> None:
    machine = vm_factory("panicky", MachineConfig())
    machine.succeed("true")
    start = time.monotonic()
    with pytest.raises(Timeout) as info:
        machine.execute("echo c > /proc/sysrq-trigger", timeout=120)
    took = time.monotonic() - start
    report("kernel panic (sysrq c)", took)
    print(str(info.value)[:1500], flush=True)
    assert "Kernel panic - not syncing: sysrq triggered crash" in str(info.value), str(info.value)[-3000:]
    assert took < 15, took


def test_a_misspelt_package_is_a_config_error_before_any_build(store: ImageStore) -> None:
    store.get(MachineConfig())  # the kernel and base image are there: what follows times the check itself
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        store.get(MachineConfig(packages=["ngnix-light"]))
    took = time.monotonic() - start
    report("misspelt package", took)
    assert "packages='ngnix-light'" in str(info.value) and "did you mean nginx-light?" in str(info.value)
    assert took < 5, took  # apt's names come from the cache after the first check on this host


@pytest.fixture
def small_cache(tmp_path: Path):
    """A 200 MiB tmpfs as the cache of an image store (too small for any image)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_an_image_build_is_named_and_leaves_no_entry(
    store: ImageStore, small_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = ImageStore(small_cache)
    small._kernel = store.kernel()  # the kernel from the shared cache: only the image is built here
    config = MachineConfig(files={"/etc/nonce": uuid.uuid4().hex})
    seed_base_layer(store, config, small_cache)  # and its base layer (65 MB): the disk fills up in the image's build
    start = time.monotonic()
    with pytest.raises(ImageBuildError, match=r"checking free space: only \d+ MiB free; .*needs about"):
        small.get(config)
    report("too little free space (checked before the build)", time.monotonic() - start)
    monkeypatch.setattr(space, "NEEDED_MIB", 1)  # skip the check: the disk fills up during the build
    start = time.monotonic()
    with pytest.raises(ImageBuildError) as info:
        small.get(config)
    report("disk full during an image build", time.monotonic() - start)
    assert "the disk filled up (No space left on device" in str(info.value), str(info.value)[-3000:]
    # nothing of the image that looks complete (its base layer, finished before the disk filled up, is complete)
    assert [e for e in small.cache.entries() if e.kind != "layers"] == []
    assert [p for p in (small_cache / "tmp").iterdir()] == []  # and no partial build left behind
    shutil.rmtree(small_cache / "debs", ignore_errors=True)
