"""Booted snapshots of foreign machines: saved once the serial login answered, restored instead of booted.

As for machines of vmtest's own image (:mod:`vmtest.vm.restore`), the first
start of a foreign machine whose snapshot is missing boots (through the
image's firmware and boot loader, or its given kernel), logs in on the serial
console, lets the boot settle (systemd's ``is-system-running --wait`` when
the guest has systemd) and is saved: its memory, its overlay at that instant
(the foreign image itself is never written) and the boot's console. Later
starts restore it, set a new serial session up over the shell that is still
logged in (:meth:`vmtest.vm.serialshell.SerialShell.resume`) and apply what a
snapshot cannot hold: the wall clock (``date -u -s @N`` over the shell) and
the test network's set-up (``image.network_setup`` runs after every restore,
as after a boot: the save comes before it). QEMU gives the guest a new
``vmgenid`` GUID at every start, so Linux reseeds its RNG.

A foreign machine restores although its cold start boots through firmware
(as a machine of vmtest's image with ``use_boot_loader`` does); a test that
is about that boot says ``snapshots=False`` (marker, ``Machine`` or
``vm_factory``).

The key: the machine's QEMU command line with its per-run parts as
placeholders, the image files' identities (absolute path, size and
modification time: a foreign image may be gigabytes, it is not hashed), the
empty disks' sizes, the login, QEMU's version, the accelerator and, for UEFI,
the firmware. Such a snapshot stays on the host that made it (its disk's
backing file is the image's path there): it is neither fetched from a remote
cache nor exported, and ``vmtest cache gc`` removes it once its image is gone.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any

from vmtest.config.machine import MachineConfig
from vmtest.core import progress
from vmtest.core.archive import sha256_file
from vmtest.core.cache import Reservation
from vmtest.core.log import log
from vmtest.image import BootImage
from vmtest.vm import efivars
from vmtest.vm import snapshot as snap
from vmtest.vm.argv import Launch
from vmtest.vm.backdoor import BackdoorTimeout
from vmtest.vm.channels import Channels
from vmtest.vm.foreign import (
    ForeignBoot,
    foreign_argv,
    image_of,
    login_of,
    prepare_disks,
    set_up_network,
    wait_for_login,
)
from vmtest.vm.paths import MachinePaths, root_disk
from vmtest.vm.restore import Choice, Kind, Restore, RestoreFailed, by_key, save_and_go_on
from vmtest.vm.serialshell import SerialShell
from vmtest.vm.start import Starting, StartPath
from vmtest.vm.tpm import identity as tpm_identity

SETTLE_SECONDS = 30
# Guest shell (any POSIX shell), before the save: systemd's boot finished, when the guest has systemd and
# timeout(1); else at once. Never fails.
SETTLE = (
    "{ command -v systemctl && command -v timeout; } >/dev/null 2>&1 && "
    f"timeout {SETTLE_SECONDS} systemctl is-system-running --wait >/dev/null 2>&1; sync; true"
)


def ineligible(vm: Starting) -> str | None:
    """Why this foreign machine cannot start from a snapshot now (None: it can)."""
    config = vm.config
    image = image_of(config)
    if image.shell != "serial":
        return "it has no shell (image.shell='none'): nothing tells when it has booted"
    overlay = root_disk(vm.name, config, vm.paths)
    if image.path is None or overlay is None:
        return "its root is not an overlay vmtest makes on image.path (no image.path, or disk_image=None)"
    tpm_paths = vm.paths if config.virtualisation.tpm.enable else None
    return snap.unsaved_devices(config) or snap.existing_state(overlay, vm.efi_vars, tpm_paths)


def image_identity(config: MachineConfig) -> str:
    """The image's files as the key sees them, one per line: the disk by absolute path, size and modification
    time (it may be gigabytes), a kernel and initrd by content (a test may pull them out of the image again
    for every run: ``vmtest.image.bootfiles.extract``)."""
    image = image_of(config)
    lines = []
    if image.path is not None:
        stat = Path(image.path).stat()
        lines.append(f"path {Path(image.path).absolute()} {stat.st_size} {stat.st_mtime_ns}")
    for option, path in (("kernel", image.kernel), ("initrd", image.initrd)):
        if path is not None:
            stat = Path(path).stat()
            lines.append(f"{option} {_digest(str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns)}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256 (once per version of it in a process: ``size`` and ``mtime_ns`` are in the cache key)."""
    return sha256_file(Path(path))


def key_argv(config: MachineConfig, accel: str, network_key: tuple[str, ...]) -> list[str]:
    """The machine's QEMU command line with its per-run parts as placeholders (pure)."""
    efi_vars = snap.PLACEHOLDER_STATE / "efi-vars.fd" if config.virtualisation.use_efi_boot else None
    paths = MachinePaths(snap.PLACEHOLDER_STATE)
    return snap.host_sides(
        foreign_argv(snap.PLACEHOLDER_NAME, config, paths, accel, Launch(network=network_key), efi_vars)
    )


def snapshot_key(config: MachineConfig, accel: str, network_key: tuple[str, ...], qemu: str) -> str:
    """The key of a foreign machine's snapshot (see the module docstring)."""
    files = hashlib.sha256(image_identity(config).encode()).hexdigest()
    return snap.snapshot_key(
        key_argv(config, accel, network_key),
        f"foreign {files}",
        qemu,
        accel,
        snap.host_of(config, accel),
        list(config.virtualisation.empty_disk_images),
        repr(login_of(image_of(config))),
        snap.firmware_digest(config),
        tpm=tpm_identity(config.virtualisation.tpm),
    )


def set_clock(vm: Starting, channels: Channels) -> None:
    """The guest's wall clock from the host's (whole seconds: the next one, as the command reaches the guest
    a moment later). A guest whose ``date`` cannot set it is said in one warning; the start goes on."""
    result = channels.shell.run(f"date -u -s @{math.ceil(time.time())} >/dev/null", 30)
    if result.status != 0:
        said = (result.stderr or result.output).decode(errors="replace").strip().splitlines()
        log(
            vm.logger,
            f"{vm.name}: the restored guest's clock could not be set (date -u -s @N exited {result.status}"
            f"{': ' + said[-1] if said else ''}); it is behind by the snapshot's age",
            level=logging.WARNING,
        )


class ForeignSave(ForeignBoot):
    """The first start of a foreign machine whose snapshot is missing: a boot and its login, then the save."""

    name = "foreign boot, saving a booted snapshot"

    def __init__(self, reservation: Reservation, meta: dict[str, Any]) -> None:
        super().__init__(fresh=True)  # (a save after a dropped restore: its overlay was on the snapshot)
        self.reservation = reservation
        self.meta = meta
        self.saved: snap.Snapshot | None = None

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        release = wait_for_login(vm, channels, timeout, network=False)
        with progress.activity(vm.name, "letting its boot settle before the snapshot"):
            channels.shell.run(SETTLE, SETTLE_SECONDS + 30)
        self.saved = save_and_go_on(vm, channels, self.reservation, {**self.meta, "kernel_release": release})
        set_clock(vm, channels)  # as after every restore: the machine that saved is no different
        set_up_network(vm, channels)
        return release

    def close(self) -> None:
        if self.saved is None:
            self.reservation.abandon()
        super().close()


class ForeignRestore(Restore):
    """A foreign machine restored from its snapshot: a fresh overlay on the snapshot's disk; the serial
    session set up again over the logged-in shell; the clock and the network's set-up."""

    def prepare_disks(self, vm: Starting, efi_vars: Path | None) -> None:
        if not self.snapshot.disk.is_file():
            raise RestoreFailed(vm.name, "restoring the snapshot", "it holds no disk")
        prepare_disks(vm, backing=self.snapshot.disk, fresh=True)
        if vm.efi_vars is not None:
            efivars.prepare(vm.name, vm.config, vm.efi_vars, vm.logger, source=efi_vars)

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        start = time.monotonic()
        shell = channels.shell
        if not isinstance(shell, SerialShell):  # (ineligible() lets only a serial shell's machine save one)
            raise RestoreFailed(vm.name, "restoring the snapshot", "the machine has no serial shell")
        with progress.activity(vm.name, "restoring its booted snapshot"):
            try:
                release = shell.resume(min(timeout, 60.0), vm.is_running)
            except BackdoorTimeout as exc:
                raise RestoreFailed(
                    vm.name, "restoring the snapshot", f"its serial shell did not answer: {exc}",
                    time.monotonic() - start,
                ) from None  # fmt: skip
            set_clock(vm, channels)
        set_up_network(vm, channels)
        return release


KIND = Kind(ForeignBoot, ForeignRestore, ForeignSave, shared=False)


def choose(choice: Choice, vm: Starting, image: BootImage | None, accel: str) -> StartPath:
    """The start path of this launch of a foreign machine (``image``: None, it has none of vmtest's)."""
    if not choice.enabled:
        return ForeignBoot()
    why = ineligible(vm)
    if why is not None:
        vm.logger.debug("%s: not from a snapshot: %s", vm.name, why)
        return ForeignBoot()
    config = vm.config
    qemu = snap.qemu_version(config.virtualisation.qemu.binary)
    key = snapshot_key(config, accel, vm.network.key_args, qemu)
    foreign = str(Path(str(image_of(config).path)).absolute())
    return by_key(choice, vm, KIND, key, qemu, {"accel": accel, "foreign_image": foreign})
