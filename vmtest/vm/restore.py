"""Start paths of booted snapshots, and the choice of a start path for each launch.

What the guest is at boot is the snapshot: the per-run set-up script's
*identity* part (host name, NIC names and addresses, mounts, the root's
size) runs at boot as in a cold boot, so services start with it, and it is
part of the snapshot's key. What a snapshot cannot hold is applied after
every restore (and after the save), in one command: the wall clock, the 9p
shares (QEMU refuses to migrate a machine with a mounted 9p export) and
``/etc/hosts`` (it names the other nodes of this run's network).

* :class:`SaveSnapshot`: the first start of a machine whose snapshot is
  missing. A cold boot (identity set-up only) until the backdoor answers (the
  point a cold boot hands the machine to the test); the guest syncs and
  unmounts its 9p shares; QEMU saves it into the cache
  (:func:`vmtest.vm.snapshot.save`) and the machine goes on running.
* :class:`Restore`: QEMU starts with ``-incoming`` from the saved state on a
  fresh overlay above the saved disk; the boot's console log is replayed into
  the console's history. QEMU makes a new ``vmgenid`` GUID at every start, so
  the guest kernel reseeds its RNG.

:func:`choose` picks the path of a launch: a cold boot when snapshots are
off or the machine cannot use one, a restore when a snapshot exists (here,
or in the remote cache: fetched, verified and re-pointed at this cache's
image first), else save one (unless another process is saving it: then a
plain cold boot). A snapshot that cannot be restored is removed, and the
boot that replaces the restore saves it anew. :func:`by_key` is that choice
for any kind of machine (:class:`Kind`: its cold, restore and save paths;
foreign machines: :mod:`vmtest.vm.foreignsnap`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vmtest.config.settings import Settings
from vmtest.core import progress
from vmtest.core.cache import Cache, Reservation
from vmtest.core.errors import MachineError
from vmtest.core.log import log
from vmtest.image import BootImage, ImageStore
from vmtest.vm import guestsetup, tpm
from vmtest.vm import snapshot as snap
from vmtest.vm.argv import Launch
from vmtest.vm.backdoor import BackdoorTimeout
from vmtest.vm.channels import Channels
from vmtest.vm.disks import HOST_CA_BUNDLE
from vmtest.vm.paths import root_disk
from vmtest.vm.start import (
    Boots,
    ColdBoot,
    Starting,
    StartPath,
    WithTpm,
    prepare_host,
    setup_failed,
    setup_script,
    wait_for_boot,
)


class RestoreFailed(MachineError):
    """A snapshot could not be restored (the lifecycle then boots cold instead)."""


def after_restore(vm: Starting, channels: Channels, timeout: float) -> None:
    """The per-run fix-ups a snapshot cannot hold (see the module docstring), as one command."""
    start = time.monotonic()
    command = guestsetup.after_restore(vm.config, time.time(), vm.network.hosts)
    try:
        result = channels.shell.run(command, min(timeout, 120.0))
    except BackdoorTimeout as exc:
        raise RestoreFailed(
            vm.name, "restoring the snapshot", f"its shell did not answer: {exc}", time.monotonic() - start
        ) from None
    if result.killed:
        raise RestoreFailed(vm.name, "restoring the snapshot", "its shell did not answer", time.monotonic() - start)
    vm.logger.debug("%s: per-run fix-ups done %.2fs after the restore", vm.name, time.monotonic() - start)
    if result.status != 0:
        raise setup_failed(
            vm,
            "applying the per-run set-up after the restore (clock, shares, /etc/hosts)",
            f"exit status {result.status}:\n{result.output.decode(errors='replace')}",
        )


def save_and_go_on(
    vm: Starting, channels: Channels, reservation: Reservation, meta: dict[str, Any]
) -> snap.Snapshot | None:
    """Save the running machine into ``reservation`` (:func:`vmtest.vm.snapshot.save`) and publish it with
    ``meta``; the machine runs on either way. A failed save is one warning and no snapshot (None)."""
    saved = None
    try:
        with progress.activity(vm.name, "saving its booted state as a snapshot"):
            extra = snap.save(
                channels,
                vm.paths,
                root_disk(vm.name, vm.config, vm.paths),
                reservation,
                vm.logger,
                vm.name,
                vm.efi_vars,
            )
        saved = snap.Snapshot(reservation.key, reservation.publish({**meta, **extra}))
    except (MachineError, OSError) as exc:
        reservation.abandon()
        log(vm.logger, f"{vm.name}: saving the snapshot failed ({exc}); going on without one", level=logging.WARNING)
    channels.monitor.command("cont")  # a machine stays usable after its state was saved
    return saved


class SaveSnapshot(Boots):
    name = "cold boot, saving a booted snapshot"

    def __init__(self, reservation: Reservation, meta: dict[str, Any]) -> None:
        self.reservation = reservation
        self.meta = meta
        self.saved: snap.Snapshot | None = None

    def prepare(self, vm: Starting) -> Launch:
        prepare_host(vm, setup_script(vm, hosts=False), fresh=True)  # (a save after a dropped restore: its overlay)
        self.start_tpm(vm, fresh=True)  # (and the TPM state the dropped restore's swtpm was given)
        return Launch(paused=True)

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        release = wait_for_boot(vm, channels, timeout)
        # Saved once the boot has settled (its services started), not at the shell's first answer: the
        # rest of the boot would otherwise be done again after every restore (a test's wait_for_unit of
        # its own service among it). It costs the save (once per configuration) the boot's remaining
        # few seconds under TCG.
        with progress.activity(vm.name, "letting its boot settle before the snapshot"):
            channels.shell.run(guestsetup.settle(), guestsetup.SETTLE_SECONDS + 30)
        channels.shell.run(guestsetup.before_save(vm.config), 60)
        self.saved = save_and_go_on(vm, channels, self.reservation, {**self.meta, "kernel_release": release})
        after_restore(vm, channels, timeout)
        return release

    def close(self) -> None:
        if self.saved is None:
            self.reservation.abandon()
        super().close()


class Restore(WithTpm):
    name = "restore of a booted snapshot"

    def __init__(self, snapshot: snap.Snapshot, instead: Callable[[], StartPath]) -> None:
        self.snapshot = snapshot
        self.instead = instead  # the start path when this snapshot cannot be restored (a boot that saves it anew)

    def prepare(self, vm: Starting) -> Launch:
        if not self.snapshot.state.is_file():  # removed meanwhile (a `vmtest cache gc` of another process)
            raise RestoreFailed(vm.name, "restoring the snapshot", f"{self.snapshot.state} is gone")
        if vm.efi_vars is not None and not self.snapshot.efi_vars.is_file():
            raise RestoreFailed(vm.name, "restoring the snapshot", "it holds no UEFI variable store")
        self.prepare_disks(vm, self.snapshot.efi_vars if vm.efi_vars is not None else None)
        self.start_tpm(vm, provision=False, fresh=True)  # QEMU gives swtpm the saved TPM's state
        # The boot's console, as if this machine had printed it (reports and console waits see it).
        console = self.snapshot.console
        vm.paths.console_log.write_bytes(console.read_bytes() if console.is_file() else b"")
        # QEMU reads the state from its stdin: no `cat` between the file and QEMU (`exec:cat FILE` took
        # ~45 ms longer to load a 120 MiB state here; QEMU 7.2 has no `file:` URI yet)
        return Launch(paused=True, incoming="fd:0", stdin=self.snapshot.state)

    def prepare_disks(self, vm: Starting, efi_vars: Path | None) -> None:
        """A fresh root overlay on the snapshot's disk, new empty disks, the variable store ``efi_vars`` (a UEFI
        machine's at the save) and the per-run set-up script (the whole of it: for a reboot)."""
        base = self.snapshot.disk if self.snapshot.disk.is_file() else None
        prepare_host(vm, setup_script(vm), base=base, fresh=True, efi_vars=efi_vars)

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
        with progress.activity(vm.name, "restoring its booted snapshot"):
            after_restore(vm, channels, timeout)  # its answer also proves that the shell is back
        return str(self.snapshot.meta().get("kernel_release", ""))

    def drop(self, vm: Starting, cache: Cache, why: str) -> StartPath:
        """This snapshot cannot be restored (``why``): say so in one line, remove it; boot cold instead (and,
        as :func:`by_key` arranges, save it anew)."""
        log(
            vm.logger,
            f"{vm.name}: snapshot {self.snapshot.key[:12]} could not be restored "
            f"({why.splitlines()[0] if why else 'no reason given'}); it is removed, booting cold",
            level=logging.WARNING,
        )
        snap.remove(cache, self.snapshot.key, vm.logger)
        return self.instead()


class Choice:
    """What :func:`choose` needs besides the machine: the cache, the setting, --vm-rebuild, and with a
    remote cache (``cache_url``) how to fetch a snapshot missing here."""

    def __init__(
        self,
        cache: Cache,
        enabled: bool,
        rebuild: Callable[[str], bool],
        fetch: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.cache = cache
        self.enabled = enabled
        self.rebuild = rebuild  # rebuild(key): True once per session for --vm-rebuild
        self.fetch = fetch  # fetch(key, qemu): True when the remote cache's snapshot is installed here

    @classmethod
    def of(cls, store: ImageStore, enabled: bool | None = None) -> Choice:
        """The snapshots of ``store``'s cache; ``enabled`` None: as the run settings say (``--vm-snapshots``)."""
        if enabled is None:
            enabled = Settings.active().snapshots == "on"

        def fetch(key: str, qemu: str) -> bool:
            accept, fixup = snap.import_policy(store.cache, qemu, store.logger)
            return store.fetch(snap.KIND, key, accept, fixup, otherwise="booting cold (and saving it here)")

        return cls(
            store.cache,
            enabled,
            lambda key: store.rebuild_once(snap.KIND, key),
            fetch if store.cache_url is not None else None,
        )


def identity(vm: Starting) -> str:
    """What of the per-run set-up is in a snapshot (and so in its key): the script's identity part, and
    the CA bundle it installs."""
    text = setup_script(vm, hosts=False)
    if vm.config.virtualisation.use_host_certs and HOST_CA_BUNDLE.is_file():
        text += "# certificates " + hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()
    return text


def used_snapshot(path: StartPath) -> str | None:
    """The key of the booted snapshot a launch restored or saved (``path``: its start path; None: neither)."""
    if isinstance(path, Restore):
        return path.snapshot.key
    saved = getattr(path, "saved", None)  # (SaveSnapshot, and the foreign machines' save)
    return saved.key if isinstance(saved, snap.Snapshot) else None


@dataclass(frozen=True)
class Kind:
    """The start paths of one kind of machine (vmtest's own image, a foreign one) around its snapshot."""

    cold: Callable[[bool], StartPath]  # a boot without a snapshot (True: on a fresh root overlay)
    restore: Callable[[snap.Snapshot, Callable[[], StartPath]], StartPath]  # (, the path if it cannot be)
    save: Callable[[Reservation, dict[str, Any]], StartPath]  # a boot that saves the snapshot
    shared: bool = True  # its snapshots can come from the remote cache


BUILT = Kind(ColdBoot, Restore, SaveSnapshot)


def by_key(choice: Choice, vm: Starting, kind: Kind, key: str, qemu: str, meta: dict[str, Any]) -> StartPath:
    """Restore snapshot ``key`` when it exists (here, or fetched from the remote cache), else save it (its
    ``meta``), unless another process is saving it: then a plain boot. --vm-rebuild removes it first. A
    snapshot that cannot be restored is removed and saved anew by the boot that replaces the restore."""
    rebuild = choice.rebuild(key)
    if rebuild:
        snap.remove(choice.cache, key, vm.logger)
    found = snap.lookup(choice.cache, key, qemu)
    if found is None and not rebuild and kind.shared and choice.fetch is not None and choice.fetch(key, qemu):
        found = snap.lookup(choice.cache, key, qemu)  # fetched from the remote cache
    if found is not None:
        return kind.restore(found, lambda: save_or_boot(choice, vm, kind, key, {"qemu": qemu, **meta}, fresh=True))
    return save_or_boot(choice, vm, kind, key, {"qemu": qemu, **meta})


def save_or_boot(
    choice: Choice, vm: Starting, kind: Kind, key: str, meta: dict[str, Any], fresh: bool = False
) -> StartPath:
    """A boot that saves snapshot ``key`` (``meta``), or a plain boot (``fresh``: on a new root overlay) when
    another process is saving it."""
    reservation = choice.cache.reserve(snap.KIND, key)
    if reservation is None:
        log(vm.logger, f"{vm.name}: another run is saving snapshot {key[:12]}; booting cold")
        return kind.cold(fresh)
    return kind.save(reservation, {**meta, "machine": vm.name})


def choose(choice: Choice, vm: Starting, image: BootImage | None, accel: str) -> StartPath:
    """The start path of this launch of a machine of vmtest's image (see the module docstring)."""
    config = vm.config
    assert image is not None
    if not choice.enabled:
        return ColdBoot()
    why = snap.ineligible(vm.name, config, vm.paths, vm.efi_vars)
    if why is not None:
        vm.logger.debug("%s: not from a snapshot: %s", vm.name, why)
        return ColdBoot()
    qemu = snap.qemu_version(config.virtualisation.qemu.binary)
    argv = snap.key_argv(config, image, accel, vm.network.key_args, choice.cache.root)
    key = snap.snapshot_key(
        argv,
        image.key,
        qemu,
        accel,
        snap.host_of(config, accel),
        snap.disk_sizes(config, image),
        identity(vm),
        snap.firmware_digest(config),
        image.build_id,
        tpm.identity(config.virtualisation.tpm),
    )
    meta = {"accel": accel, "image_key": image.key, "packages": list(config.packages)}
    return by_key(choice, vm, BUILT, key, qemu, meta)


Chooser = Callable[[Choice, Starting, BootImage | None, str], StartPath]


class Relaunching(Starting, Protocol):
    """What :class:`StartPaths` needs of the machine to launch it again after a failed restore."""

    store: ImageStore

    def qemu_output(self, limit: int = 3000) -> str: ...

    def launch_once(self, start: float) -> None: ...

    def abort_launch(self) -> None: ...


class StartPaths:
    """Which start path each launch of one machine takes: a fixed one (unit tests), else the one already
    decided (a cold boot after a snapshot was dropped), else the one :func:`choose` picks (a cold boot
    when snapshots are off: ``snapshots=None``)."""

    def __init__(
        self,
        fixed: StartPath | None,
        snapshots: Choice | None,
        kind: Kind = BUILT,
        chooser: Chooser = choose,
    ) -> None:
        self.fixed = fixed
        self.snapshots = snapshots
        self.kind = kind
        self.chooser = chooser
        self.next: StartPath | None = None
        self.current: StartPath = fixed or kind.cold(False)  # the current (or last) launch's path

    def pick(self, vm: Starting, image: BootImage | None, accel: str) -> StartPath:
        """The path of the launch that begins now; it becomes :attr:`current`."""
        path = self.next or self.fixed
        if path is None:
            path = self.kind.cold(False) if self.snapshots is None else self.chooser(self.snapshots, vm, image, accel)
        self.current, self.next = path, None
        return path

    def launch(self, vm: Relaunching, start: float) -> None:
        """Launch ``vm``; when its snapshot cannot be restored, drop it (one log line) and boot cold instead."""
        try:
            vm.launch_once(start)
        except MachineError as exc:
            if not isinstance(self.current, Restore):
                raise
            self.fall_back(vm, exc)
            vm.launch_once(start)

    def fall_back(self, vm: Relaunching, exc: MachineError) -> None:
        """The current launch's snapshot cannot be restored: end that launch, remove the snapshot (saying
        QEMU's own reason, e.g. "load of migration failed: ...", else ``exc``); the next launch boots cold."""
        said = vm.qemu_output().splitlines()[-1:]
        vm.abort_launch()
        assert isinstance(self.current, Restore)
        self.next = self.current.drop(vm, vm.store.cache, said[0] if said else str(exc))
