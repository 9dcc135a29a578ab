"""Start paths: how a launched QEMU becomes a READY guest.

A start path is a plug-in of the lifecycle (:class:`vmtest.vm.lifecycle.VM`):
it prepares what its launch needs on the host, says how QEMU's command line
differs (:class:`~vmtest.vm.argv.Launch`), lets the guest run once the
channels are attached, and waits until the guest's shell answers.

:class:`ColdBoot` boots the kernel: QEMU starts paused (``-S``) so that the
channels attach before the first console line, the root overlay, the empty
disks and the per-run set-up script are prepared, and readiness is the
backdoor's banner plus a check that the per-run set-up (``vmtest-setup.service``,
before ``sysinit.target``) succeeded. Booted snapshots add two more paths
(:mod:`vmtest.vm.restore`).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Protocol

from vmtest.config.machine import MachineConfig
from vmtest.core import progress
from vmtest.core.contract import CERTS_NAME, CONSOLE_LOGLEVEL, SETUP_DONE, SETUP_NAME, SETUP_UNIT
from vmtest.core.errors import LaunchError
from vmtest.image import BootImage
from vmtest.vm import disks, efivars, guestsetup
from vmtest.vm.argv import Launch
from vmtest.vm.channels import Channels, NetworkAttachment
from vmtest.vm.paths import MachinePaths
from vmtest.vm.tpm import Swtpm

# The set-up script's last step writes SETUP_DONE, and the backdoor's greeting says whether it is there:
# this check runs only when it is not (or the greeting does not say), and asks systemd and the journal why.
SETUP_CHECK = (
    f"echo {CONSOLE_LOGLEVEL} > /proc/sys/kernel/printk; "
    f"[ -e {SETUP_DONE} ] && exit 0; "
    f'echo "{SETUP_UNIT} did not complete ($(systemctl is-active {SETUP_UNIT} || true))"; '
    f"journalctl -b -o cat -u {SETUP_UNIT} | tail -n 20; exit 1"
)


class Starting(Protocol):
    """What a start path sees of the machine being started."""

    name: str
    config: MachineConfig
    logger: logging.Logger
    image: BootImage | None
    launched_at: float
    network: NetworkAttachment
    efi_vars: Path | None  # a UEFI machine's variable store

    @property
    def paths(self) -> MachinePaths: ...

    def is_running(self) -> bool: ...

    def console_tail(self, n: int = 20, since: float | None = None) -> list[str]: ...


class StartPath(Protocol):
    """One way of getting from a launched QEMU to a READY guest (cold boot, restore, ...)."""

    name: str

    def prepare(self, vm: Starting) -> Launch:
        """Write what this start needs on the host; return how the launch's argv differs."""
        ...

    def resume(self, vm: Starting, channels: Channels) -> None:
        """The channels are attached: let the guest run."""
        ...

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        """Wait until the guest's shell answers; return the guest's kernel release.

        May raise the backdoor's BackdoorClosed / BackdoorTimeout (the lifecycle turns them into
        errors naming the machine) or a MachineError of its own.
        """
        ...

    def close(self) -> None:
        """The launch ended (stopped, failed or superseded): let go of what the path holds."""
        ...


def setup_script(vm: Starting, hosts: bool = True) -> str:
    """The per-run set-up script of this machine (pure): its identity (name, NICs and addresses, mounts,
    the root's size, certificates) and, with ``hosts``, the ``/etc/hosts`` of its network."""
    assert vm.image is not None
    virt = vm.config.virtualisation
    return guestsetup.script(
        vm.config,
        vm.name,
        vm.network.setup_script,
        disks.grows_root(vm.config, vm.image),
        virt.use_host_certs,
        hosts=vm.network.hosts if hosts else "",
    )


def prepare_host(
    vm: Starting, script: str, base: Path | None = None, fresh: bool = False, efi_vars: Path | None = None
) -> None:
    """Disks (the root overlay on ``base``, default the image), a UEFI machine's variable store (a copy of
    ``efi_vars`` when given, else made if missing) and the per-run set-up ``script`` (run by
    vmtest-setup.service at every boot) with the host's CA bundle in the exchange directory."""
    assert vm.image is not None
    paths = vm.paths
    prepared = disks.prepare(vm.name, vm.config, paths, vm.image, vm.logger, base=base, fresh=fresh)
    if vm.efi_vars is not None:
        efivars.prepare(vm.name, vm.config, vm.efi_vars, vm.logger, source=efi_vars)
    if prepared.certs is not None:
        shutil.copyfile(prepared.certs, paths.xchg / CERTS_NAME)
    (paths.xchg / SETUP_NAME).write_text(script)


def wait_for_boot(vm: Starting, channels: Channels, timeout: float) -> str:
    """The backdoor's banner (the guest booted to it), then a check that the per-run set-up succeeded.
    Used by a cold boot, the boot before a snapshot is saved and after every reboot."""
    with progress.activity(vm.name, "booting"):
        release = channels.shell.wait_ready(timeout, vm.is_running)
        if not channels.shell.setup_done:
            set_up(vm, channels, SETUP_CHECK, "running the per-run set-up in the guest (host name, network, mounts)")
    return release


def set_up(vm: Starting, channels: Channels, command: str, action: str) -> None:
    """Run a start's set-up ``command`` in the guest (for ``action``); a non-zero exit is a LaunchError
    with the command's exit status and what it printed."""
    result = channels.shell.run(command, 60)
    if result.status != 0:
        said = (result.stderr + result.output).decode(errors="replace")
        raise setup_failed(vm, action, f"exit status {result.status}:\n{said}")


def setup_failed(vm: Starting, action: str, reason: str) -> LaunchError:
    """A start's set-up in the guest failed: the error names the machine, the time since the launch and
    the last console lines."""
    return LaunchError(
        vm.name, action, reason, time.monotonic() - vm.launched_at, vm.console_tail(since=vm.launched_at)
    )


class WithTpm:
    """A start path's swtpm (``tpm.enable``): started before QEMU, stopped when the launch ends."""

    tpm: Swtpm | None = None

    def start_tpm(self, vm: Starting, provision: bool = True, fresh: bool = False) -> None:
        """Start the machine's swtpm, if it has a TPM (:meth:`vmtest.vm.tpm.Swtpm.start`)."""
        tpm = vm.config.virtualisation.tpm
        if tpm.enable:
            self.tpm = Swtpm(vm.name, tpm, vm.paths, vm.logger)
            self.tpm.start(provision=provision, fresh=fresh)

    def close(self) -> None:
        if self.tpm is not None:
            self.tpm.stop()
            self.tpm = None


class Boots(WithTpm):
    """What every start path that boots shares: QEMU starts paused (``-S``), so that the channels attach
    before the first console line; :meth:`resume` lets its CPUs run; the machine's swtpm, if any
    (:meth:`start_tpm` in ``prepare``), is let go of when the launch ends."""

    def resume(self, vm: Starting, channels: Channels) -> None:
        channels.monitor.command("cont")


class ColdBoot(Boots):
    """Boot the kernel. ``fresh``: a new root overlay and TPM state even if they exist (after a discarded
    boot or restore)."""

    name = "cold boot"

    def __init__(self, fresh: bool = False) -> None:
        self.fresh = fresh

    def prepare(self, vm: Starting) -> Launch:
        prepare_host(vm, setup_script(vm), fresh=self.fresh)
        self.start_tpm(vm, fresh=self.fresh)
        return Launch(paused=True)

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        return wait_for_boot(vm, channels, timeout)
