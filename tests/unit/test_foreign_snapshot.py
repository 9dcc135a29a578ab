"""Booted snapshots of foreign machines: what is in the key, when a machine cannot take one, and how the
cache treats them (pure, or on files; no QEMU)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmtest import MachineConfig
from vmtest.core.cache import Cache
from vmtest.vm import foreignsnap
from vmtest.vm import snapshot as snap
from vmtest.vm.argv import Launch
from vmtest.vm.foreign import foreign_argv
from vmtest.vm.paths import MachinePaths

QEMU = "QEMU emulator version 7.2.22"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        out[name] = tmp_path / name
        out[name].write_bytes(b"QFI\xfb" + name.encode())
    return out


def config(files: dict[str, Path], image: dict[str, object] | None = None, **virt: object) -> MachineConfig:
    return MachineConfig(
        image={"path": str(files["disk.qcow2"]), **(image or {})}, virtualisation={"graphics": False, **virt}
    )


def key(cfg: MachineConfig, accel: str = "tcg", network: tuple[str, ...] = (), qemu: str = QEMU) -> str:
    return foreignsnap.snapshot_key(cfg, accel, network, qemu)


def test_everything_that_shapes_the_guest_is_in_the_key(files: dict[str, Path]) -> None:
    base = key(config(files))
    assert base == key(config(files))
    direct = {"kernel": str(files["vmlinuz"]), "initrd": str(files["initrd.img"])}
    changed = {
        "memory": key(config(files, memory_size=2048)),
        "empty disk": key(config(files, empty_disk_images=[64])),
        "empty disk size": key(config(files, empty_disk_images=[128])),
        "UEFI": key(config(files, use_efi_boot=True)),
        "direct boot": key(config(files, direct)),
        "the login": key(config(files, {"password": "other"})),
        "QEMU": key(config(files), qemu="QEMU emulator version 8.2.0"),
        "accelerator": key(config(files), accel="kvm"),
        "a VLAN NIC": key(config(files), network=("-netdev", "vde,id=vlan1,sock=/@vlan1@")),
    }
    for what, k in changed.items():
        assert k != base, what
    assert len(set(changed.values())) == len(changed), "two different changes gave one key"


def test_the_disk_is_known_by_its_stat_a_kernel_by_its_content(files: dict[str, Path]) -> None:
    before = key(config(files))
    stat = files["disk.qcow2"].stat()
    os.utime(files["disk.qcow2"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = key(config(files))
    assert touched != before
    files["disk.qcow2"].write_bytes(files["disk.qcow2"].read_bytes() + b"more")
    os.utime(files["disk.qcow2"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert key(config(files)) not in (before, touched)  # same time, another size
    direct = config(files, {"kernel": str(files["vmlinuz"]), "initrd": str(files["initrd.img"])})
    before = key(direct)
    files["vmlinuz"].write_bytes(files["vmlinuz"].read_bytes())  # pulled out of the image again: same bytes
    assert key(direct) == before
    files["initrd.img"].write_bytes(b"another initrd")
    assert key(direct) != before


def test_per_run_parts_are_not_in_the_key(files: dict[str, Path]) -> None:
    argv = foreignsnap.key_argv(config(files), "tcg", ())
    assert not any("/tmp/" in a and "disk.qcow2" not in a for a in argv), argv
    assert "@name@" in " ".join(argv)


def test_a_restore_of_a_foreign_machine_loads_its_state_and_gets_a_new_vmgenid(files: dict[str, Path]) -> None:
    launch = Launch(paused=True, incoming="fd:0")
    argv = foreign_argv("f", config(files), MachinePaths(Path("/s")), "tcg", launch)
    assert argv[argv.index("-incoming") + 1] == "fd:0" and "-S" in argv
    assert "vmgenid,guid=auto" in argv  # a new GUID at every start: the restored kernel reseeds its RNG
    assert "-incoming" not in foreign_argv("f", config(files), MachinePaths(Path("/s")), "tcg", Launch(paused=True))


def starting(cfg: MachineConfig, state: Path, efi_vars: Path | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="f", config=cfg, paths=MachinePaths(state), efi_vars=efi_vars)


def test_which_foreign_machines_take_a_snapshot(files: dict[str, Path], tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert foreignsnap.ineligible(starting(config(files), state)) is None
    assert (
        foreignsnap.ineligible(starting(config(files, bios="/usr/share/qemu/qboot.rom"), state)) is None
    )  # its disk is the point
    reasons = {
        "no shell": foreignsnap.ineligible(starting(config(files, {"shell": "none"}), state)),
        "no overlay": foreignsnap.ineligible(starting(config(files, disk_image=None), state)),
    }
    assert "image.shell='none'" in str(reasons["no shell"])
    assert "disk_image=None" in str(reasons["no overlay"])
    with_tpm = starting(config(files, tpm={"enable": True}), state)
    assert foreignsnap.ineligible(with_tpm) is None  # the snapshot holds the TPM's state
    with_tpm.paths.tpm_state.mkdir(parents=True)
    (with_tpm.paths.tpm_state / "tpm2-00.permall").write_bytes(b"x")
    assert "TPM's state already exists" in str(foreignsnap.ineligible(with_tpm))
    shutil.rmtree(state)
    state.mkdir()
    (state / "f.qcow2").write_bytes(b"")
    assert "already exists" in str(foreignsnap.ineligible(starting(config(files), state)))


def entry(cache: Cache, key: str, meta: dict[str, object]) -> None:
    path = cache.root / "snapshots" / key
    path.mkdir(parents=True)
    (path / "state").write_bytes(b"x")
    (path / "meta.json").write_text(json.dumps({"created": time.time(), "last_used": time.time(), **meta}))


def test_gc_keeps_a_foreign_snapshot_while_its_image_file_is_there(tmp_path: Path, files: dict[str, Path]) -> None:
    cache = Cache(tmp_path / "cache")
    entry(cache, "a" * 32, {"qemu": QEMU, "foreign_image": str(files["disk.qcow2"])})
    entry(cache, "b" * 32, {"qemu": QEMU, "foreign_image": str(tmp_path / "gone.qcow2")})
    removed = cache.gc(max_age_days=14)
    assert removed == [f"snapshots/{'b' * 32}"]
    assert snap.lookup(cache, "a" * 32, QEMU) is not None


def test_a_foreign_snapshot_is_never_imported(tmp_path: Path) -> None:
    accept, _ = snap.import_policy(Cache(tmp_path / "cache"), QEMU, logging.getLogger("t"))
    why = accept(snap.KIND, "a" * 32, {"qemu": QEMU, "foreign_image": "/srv/disk.qcow2"})
    assert why == "a snapshot of a foreign image stays on the host that made it"
