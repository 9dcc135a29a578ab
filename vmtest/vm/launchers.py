"""What kind of machine a launch starts: the lifecycle's plug-in that prepares each launch.

The lifecycle (:class:`vmtest.vm.lifecycle.VM`) owns the states, spawns QEMU
and attaches the channels; a :class:`Launcher` says what comes before: the
backend to spawn with, which start paths the machine can take
(:mod:`vmtest.vm.start`, :mod:`vmtest.vm.restore`) and, at every launch,
the preparation ending in QEMU's command line.

* :class:`BuiltLauncher`: a machine of vmtest's own image (built or found in
  the image store), booted directly from its kernel or, with
  ``boot_loader``, from the bootable disk; cold or from a booted snapshot.
* :class:`ForeignLauncher`: a disk image vmtest did not build
  (``MachineConfig(image=...)``): nothing is built, a shell logged in on the
  serial console (:mod:`vmtest.vm.foreign`); cold or from a booted snapshot
  (:mod:`vmtest.vm.foreignsnap`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Protocol

from vmtest.config import foreign as foreign_config
from vmtest.config.machine import MachineConfig
from vmtest.image import BootImage, ImageStore
from vmtest.vm import accel as accel_mod
from vmtest.vm import efivars, foreignsnap
from vmtest.vm.argv import Launch, machine_argv
from vmtest.vm.bootargv import Boot
from vmtest.vm.channels import Backend, Channels
from vmtest.vm.foreign import ForeignBackend, foreign_argv, wait_for_login
from vmtest.vm.paths import MachinePaths, StateDir
from vmtest.vm.qemu_backend import QemuBackend
from vmtest.vm.restore import Choice, StartPaths
from vmtest.vm.start import Starting, StartPath, wait_for_boot


class Preparing(Starting, Protocol):
    """What a launcher sees of the machine it prepares, besides what a start path sees (and fills in: the
    image, the accelerator, the UEFI variable store)."""

    store: ImageStore
    dirs: StateDir
    starts: StartPaths
    accel: str | None
    stdin: Path | None  # what this launch's QEMU reads on its stdin (a restore: its saved state)


class Launcher(Protocol):
    """One kind of machine, as the lifecycle launches it."""

    def backend(self) -> Backend:
        """How QEMU is spawned and its channels attached."""
        ...

    def start_paths(self, fixed: StartPath | None, snapshots: Choice | None) -> StartPaths:
        """The start paths this kind of machine can take (``fixed``: always that one, for unit tests)."""
        ...

    def after_reboot(self, vm: Starting, channels: Channels, timeout: float) -> str:
        """Wait for the shell of a guest that rebooted (in the same QEMU; not the start path's own wait: a
        restore's fix-ups, a snapshot's save); return the guest's kernel release."""
        ...

    def prepare(self, vm: Preparing) -> list[str]:
        """Everything a launch needs before QEMU (the image, the accelerator, the state directory, the UEFI
        variable store, the start path's files); QEMU's command line."""
        ...


class Requested:
    """What the test asked of every launch: the accelerator (None: the run setting's) and where what outlives
    a run without --vm-keep-state is kept (``efi.keep_variables``; None: nowhere)."""

    def __init__(self, accel: str | None = None, kept_dir: Path | None = None) -> None:
        self.accel_request = accel
        self.kept_dir = kept_dir

    def state_dir(self, vm: Preparing) -> MachinePaths:
        """The state directory, ready, and a UEFI machine's variable store path."""
        paths = vm.dirs.prepare()
        vm.efi_vars = efivars.store_path(vm.name, vm.config, paths.state_dir, self.kept_dir, os.environ)
        return paths


def _launch(vm: Preparing, image: BootImage | None, accel: str) -> Launch:
    """This launch's start path picked (it becomes ``vm.starts.current``) and prepared, with the network (its
    switches brought up)."""
    if vm.network.ensure_up is not None:
        vm.network.ensure_up()
    start_path = vm.starts.pick(vm, image, accel)
    launch = dataclasses.replace(start_path.prepare(vm), network=vm.network.qemu_args)
    vm.stdin = launch.stdin
    return launch


class BuiltLauncher(Requested):
    """A machine of vmtest's own image: found or built by the image store, cold boot or booted snapshot."""

    def backend(self) -> Backend:
        return QemuBackend()

    def start_paths(self, fixed: StartPath | None, snapshots: Choice | None) -> StartPaths:
        return StartPaths(fixed, snapshots)  # snapshots None: never from a snapshot

    def after_reboot(self, vm: Starting, channels: Channels, timeout: float) -> str:
        return wait_for_boot(vm, channels, timeout)  # the backdoor, and the per-run set-up's check

    def prepare(self, vm: Preparing) -> list[str]:
        vm.image = image = vm.store.get(vm.config)
        if vm.accel is None:
            vm.accel = accel_mod.choose_for(vm.store.cache, image, vm.logger, self.accel_request)
        paths = self.state_dir(vm)
        launch = _launch(vm, image, vm.accel)
        boot = Boot(image.kernel, image.initrd, image.disk, vm.efi_vars, image.modules)
        return machine_argv(vm.name, vm.config, boot, paths, vm.accel, launch)


class ForeignLauncher(Requested):
    """A disk image vmtest did not build: used as it is, its own boot, a shell logged in on the serial
    console; cold or from a booted snapshot."""

    def __init__(self, image: foreign_config.ForeignImage, accel: str | None, kept_dir: Path | None) -> None:
        super().__init__(accel, kept_dir)
        self.image = image

    def backend(self) -> Backend:
        return ForeignBackend(self.image)

    def start_paths(self, fixed: StartPath | None, snapshots: Choice | None) -> StartPaths:
        return StartPaths(fixed, snapshots, foreignsnap.KIND, foreignsnap.choose)

    def after_reboot(self, vm: Starting, channels: Channels, timeout: float) -> str:
        return wait_for_login(vm, channels, timeout)  # the serial login again, and the network's set-up

    def prepare(self, vm: Preparing) -> list[str]:
        if vm.accel is None:
            # Probing KVM needs a kernel: vmtest's own default one (only when no verdict is cached yet).
            vm.accel = accel_mod.choose(
                vm.store.cache, lambda: accel_mod.probe_boot(vm.store.get(MachineConfig())), vm.logger,
                self.accel_request,
            )  # fmt: skip
        paths = self.state_dir(vm)
        launch = _launch(vm, None, vm.accel)
        return foreign_argv(vm.name, vm.config, paths, vm.accel, launch, vm.efi_vars)


def launcher_for(config: MachineConfig, accel: str | None = None, kept_dir: Path | None = None) -> Launcher:
    """The launcher of a machine of ``config`` (``accel``, ``kept_dir``: see :class:`Requested`)."""
    if config.image is None:
        return BuiltLauncher(accel, kept_dir)
    return ForeignLauncher(config.image, accel, kept_dir)
