"""Start paths of booted snapshots, and the choice of a start path for each launch.

* :class:`SaveSnapshot`: the first start of a machine whose snapshot is
  missing. A cold boot without the per-run set-up (a generic machine: no
  name, no addresses), to the end of the boot (``is-system-running``); then
  the guest syncs and unmounts its 9p shares, QEMU saves it into the cache
  (:func:`vmtest.vm.snapshot.save`) and the machine is restored from it at
  once (:meth:`SaveSnapshot.follow_up`), which also proves the snapshot works.
* :class:`Restore`: QEMU starts with ``-incoming`` from the saved state on a
  fresh overlay above the saved disk; the boot's console log is replayed
  into the console's history; then, before the first test command, what
  must differ per run: the wall clock (set from the host), the exchange
  directory mounted again, and the per-run set-up script (host name,
  addresses, ``/etc/hosts``, shares, mounts). A new ``vmgenid`` GUID (QEMU
  makes one per start) makes the guest kernel reseed its RNG.

:func:`choose` picks the path of a launch: a cold boot when snapshots are
off or the machine cannot use one, a restore when a snapshot exists, else
save one (unless another process is saving it: then a plain cold boot).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from typing import Any

from vmtest.config.machine import MachineConfig
from vmtest.core.cache import Cache, Reservation
from vmtest.core.contract import SETUP_NAME, XCHG_GUEST_PATH, ensure_xchg_mounted
from vmtest.core.errors import LaunchError, MachineError
from vmtest.core.log import log
from vmtest.image import BootImage
from vmtest.vm import snapshot as snap
from vmtest.vm.argv import Launch
from vmtest.vm.backdoor import BackdoorTimeout
from vmtest.vm.channels import Channels
from vmtest.vm.paths import root_disk
from vmtest.vm.start import ColdBoot, Starting, StartPath, prepare_host, wait_for_boot

SETTLE = "systemctl is-system-running --wait >/dev/null 2>&1 || true"
BEFORE_SAVE = f"sync; umount {XCHG_GUEST_PATH} 2>/dev/null || true; sync"


class RestoreFailed(MachineError):
    """A snapshot could not be restored (the lifecycle then boots cold instead)."""


class SaveSnapshot:
    name = "cold boot, saving a booted snapshot"

    def __init__(self, reservation: Reservation, meta: dict[str, Any]) -> None:
        self.reservation = reservation
        self.meta = meta
        self.saved: snap.Snapshot | None = None
        self.failed = False

    def prepare(self, vm: Starting) -> Launch:
        prepare_host(vm, setup=False)
        return Launch(paused=True)

    def resume(self, vm: Starting, channels: Channels) -> None:
        channels.monitor.command("cont")

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        start = time.monotonic()
        release = wait_for_boot(vm, channels, timeout, setup=False)
        channels.shell.run(SETTLE, max(30.0, timeout - (time.monotonic() - start)))
        channels.shell.run(BEFORE_SAVE, 60)
        disk = root_disk(vm.name, vm.config, vm.paths)
        try:
            extra = snap.save(channels, vm.paths, disk, self.reservation, vm.logger, vm.name)
            path = self.reservation.publish({**self.meta, **extra, "kernel_release": release})
            self.saved = snap.Snapshot(self.reservation.key, path)
        except (MachineError, OSError) as exc:
            self.reservation.abandon()
            self.failed = True
            log(
                vm.logger, f"{vm.name}: saving the snapshot failed ({exc}); booting cold instead", level=logging.WARNING
            )
        return release

    def follow_up(self) -> StartPath | None:
        if self.saved is not None:
            return Restore(self.saved, just_saved=True)
        return ColdBoot(fresh=True) if self.failed else None

    def close(self) -> None:
        if self.saved is None:
            self.reservation.abandon()


class Restore:
    name = "restore of a booted snapshot"

    def __init__(self, snapshot: snap.Snapshot, just_saved: bool = False) -> None:
        self.snapshot = snapshot
        self.just_saved = just_saved

    def prepare(self, vm: Starting) -> Launch:
        base = self.snapshot.disk if self.snapshot.disk.is_file() else None
        prepare_host(vm, base=base, fresh=True)
        # The boot's console, as if this machine had printed it (reports and console waits see it).
        console = self.snapshot.console
        vm.paths.console_log.write_bytes(console.read_bytes() if console.is_file() else b"")
        return Launch(paused=True, incoming=f"exec:cat {shlex.quote(str(self.snapshot.state))}")

    def resume(self, vm: Starting, channels: Channels) -> None:
        start = time.monotonic()
        if self.snapshot.console.is_file():
            channels.console.preload(self.snapshot.console.read_bytes())
        while True:
            if not vm.is_running():
                raise RestoreFailed(
                    vm.name, "restoring the snapshot", "QEMU exited while loading it", time.monotonic() - start
                )
            try:
                status = channels.monitor.command("query-status").get("status")
            except Exception as exc:  # a QEMU that fails the load goes away under the QMP client
                raise RestoreFailed(
                    vm.name, "restoring the snapshot", f"QMP failed: {exc}", time.monotonic() - start
                ) from None
            if status != "inmigrate":
                break
            if time.monotonic() - start > snap.SAVE_TIMEOUT:
                raise RestoreFailed(
                    vm.name, "restoring the snapshot", "QEMU did not finish loading it", time.monotonic() - start
                )
            time.sleep(0.01)
        vm.logger.debug("%s: snapshot loaded in %.2fs", vm.name, time.monotonic() - start)
        channels.monitor.command("cont")

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        """One command does what must differ per run (the first command after a restore is the slowest:
        TCG translates the guest's code afresh); its answer also proves that the shell is back."""
        start = time.monotonic()
        setup = (vm.paths.xchg / SETUP_NAME).read_text()  # as the file a reboot runs, inline: no exec of sh
        command = (
            f"date -u -s @{time.time():.6f} >/dev/null || {{ echo 'setting the clock failed' >&2; exit 90; }}; "
            f"{ensure_xchg_mounted()} || {{ echo 'mounting the exchange directory failed' >&2; exit 91; }}; "
            f"( {setup} ) 2>&1"
        )
        try:
            result = channels.shell.run(command, min(timeout, 120.0))
        except BackdoorTimeout as exc:
            raise RestoreFailed(
                vm.name, "restoring the snapshot", f"its shell did not answer: {exc}", time.monotonic() - start
            ) from None
        if result.killed:
            raise RestoreFailed(vm.name, "restoring the snapshot", "its shell did not answer", time.monotonic() - start)
        vm.logger.debug("%s: per-run fix-ups %.2fs after cont", vm.name, time.monotonic() - start)
        if result.status != 0:
            raise LaunchError(
                vm.name,
                "applying the per-run set-up after the restore (clock, exchange directory, host name, network, mounts)",
                f"exit status {result.status}:\n{result.output.decode(errors='replace')}",
                time.monotonic() - vm.launched_at,
                vm.console_tail(),
            )
        return str(self.snapshot.meta().get("kernel_release", ""))

    def follow_up(self) -> StartPath | None:
        return None

    def close(self) -> None:
        pass


class Choice:
    """The inputs of :func:`choose` that the lifecycle knows."""

    def __init__(self, cache: Cache, enabled: bool, rebuild: Callable[[str], bool]) -> None:
        self.cache = cache
        self.enabled = enabled
        self.rebuild = rebuild  # rebuild(key): True once per session for --vm-rebuild


def choose(
    choice: Choice, vm: Starting, image: BootImage, accel: str, network_key: tuple[str, ...], host: str
) -> StartPath:
    """The start path of this launch (see the module docstring)."""
    config: MachineConfig = vm.config
    if not choice.enabled:
        return ColdBoot()
    why = snap.ineligible(vm.name, config, vm.paths)
    if why is not None:
        vm.logger.debug("%s: not from a snapshot: %s", vm.name, why)
        return ColdBoot()
    qemu = snap.qemu_version(config.virtualisation.qemu.binary)
    argv = snap.key_argv(config, image, accel, network_key)
    key = snap.snapshot_key(argv, image.key, qemu, accel, host, snap.disk_sizes(config, image))
    if choice.rebuild(key):
        snap.remove(choice.cache, key, vm.logger)
    found = snap.lookup(choice.cache, key, qemu)
    if found is not None:
        return Restore(found)
    reservation = choice.cache.reserve(snap.KIND, key)
    if reservation is None:
        log(vm.logger, f"{vm.name}: another run is saving snapshot {key[:12]}; booting cold")
        return ColdBoot()
    meta = {"qemu": qemu, "accel": accel, "image_key": image.key, "machine": vm.name, "packages": list(config.packages)}
    return SaveSnapshot(reservation, meta)
