"""Foreign machines: a disk image vmtest did not build (``MachineConfig(image=ForeignImage(...))``).

Three pieces plug into the lifecycle (:class:`vmtest.vm.lifecycle.VM`):
:func:`foreign_argv` (QEMU's command line: the image's own boot, or a given
kernel; QMP, the serial console, the guest agent's port; no backdoor and no
9p share), :class:`ForeignBoot` (the start path: a qcow2 overlay on the
image, which is never written; ready when the serial shell logged in) and
:class:`ForeignBackend` (QMP, the console and the shell logged in on it,
:mod:`vmtest.vm.serialshell`). A machine with ``shell="none"`` gets
:class:`NoShell`: every command says it has none. Booted snapshots of such
machines: :mod:`vmtest.vm.foreignsnap`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from vmtest.config.foreign import ForeignImage
from vmtest.config.machine import MachineConfig
from vmtest.core import progress
from vmtest.core.errors import MachineError
from vmtest.vm import argv as qemu
from vmtest.vm import efivars
from vmtest.vm.argv import Launch
from vmtest.vm.backdoor import Result
from vmtest.vm.bootargv import Boot, tpm_args, vmgenid_args
from vmtest.vm.channels import ChannelError, Channels, Process
from vmtest.vm.console import SerialConsole
from vmtest.vm.disks import check_host, empty_disks, qemu_img
from vmtest.vm.paths import MachinePaths, root_disk
from vmtest.vm.qemu_backend import connect_unix, hold_agent, open_monitor
from vmtest.vm.serialshell import Login, LoginFailed, SerialShell
from vmtest.vm.start import Boots, Starting, set_up, setup_failed

NO_SHELL = (
    "it has no shell: a foreign image with image.shell='none' takes no commands (screens, keys, the serial "
    "console and QMP work); use image.shell='serial' with a login on ttyS0"
)


def image_of(config: MachineConfig) -> ForeignImage:
    assert config.image is not None
    return config.image


def login_of(image: ForeignImage) -> Login:
    return Login(
        image.user,
        image.password,
        image.login_prompt,
        image.password_prompt,
        image.shell_prompt,
        image.base64_output,
    )


def root_drive(name: str, config: MachineConfig, paths: MachinePaths) -> dict[str, str] | None:
    """The root drive's QEMU options: the overlay in the state directory, or (``disk_image=None``) the image
    itself with ``snapshot=on`` (writes go to a temporary file). None without a disk."""
    image = image_of(config)
    if image.path is None:
        return None
    overlay = root_disk(name, config, paths)
    if overlay is None:
        return {"file": str(Path(image.path).absolute()), "format": image.disk_format(), "if": "none", "id": "root",
                "snapshot": "on"}  # fmt: skip
    return {"file": str(overlay), "format": "qcow2", "if": "none", "id": "root", "cache": "writeback",
            "werror": "report"}  # fmt: skip


def boot_args(config: MachineConfig) -> list[str]:
    """Direct boot of the given kernel (its command line is ``kernel_params`` alone), else nothing: the
    firmware boots the disk."""
    image = image_of(config)
    if image.kernel is None:
        return []
    return [
        "-kernel",
        image.kernel,
        *(["-initrd", image.initrd] if image.initrd else []),
        "-append",
        " ".join(config.kernel_params),
    ]


def channel_args(config: MachineConfig, paths: MachinePaths) -> list[str]:
    """QMP and the serial console on unix sockets; the guest agent's port when ``qemu.guest_agent``."""
    args = [
        "-chardev",
        f"socket,id=qmp,path={paths.qmp},server=on,wait=off",
        "-mon",
        "chardev=qmp,mode=control",
        "-chardev",
        f"socket,id=serial0,path={paths.serial},server=on,wait=off",
        "-serial",
        "chardev:serial0",
    ]
    if config.virtualisation.qemu.guest_agent:
        args += [
            "-device",
            "virtio-serial-pci,id=virtio-serial0",
            "-chardev",
            f"socket,id=qga0,path={paths.agent},server=on,wait=off",
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    return args


def foreign_argv(
    name: str, config: MachineConfig, paths: MachinePaths, accel: str, launch: Launch, efi_vars: Path | None = None
) -> list[str]:
    """The full QEMU command line of foreign machine ``name`` (pure); ``efi_vars``: a UEFI machine's store."""
    virt = config.virtualisation
    no_boot = Boot(Path("/nonexistent"), Path("/nonexistent"), efi_vars=efi_vars)
    return [
        *qemu.head_args(name, config, no_boot, accel, launch),
        *boot_args(config),
        *qemu.disk_args(
            name, config.replace(virtualisation=_no_root(config)), paths, no_boot, root_drive(name, config, paths)
        ),  # fmt: skip
        *channel_args(config, paths),
        *qemu.user_net_args(config, launch.user_net, launch.user_net_extra),
        *launch.network,
        *qemu.extra_args(virt.qemu.networking_options),
        *qemu.display_args(config),
        *qemu.input_args(config),
        *tpm_args(config, paths),
        *vmgenid_args(config),
        "-device",
        "virtio-rng-pci",
        "-rtc",
        "base=utc",
        *qemu.extra_args(virt.qemu.options),
    ]


def _no_root(config: MachineConfig) -> object:
    """The virtualisation options with vmtest's own root disk off (the foreign root is added as given)."""
    from dataclasses import replace

    return replace(config.virtualisation, use_default_filesystems=False)


def wait_for_login(vm: Starting, channels: Channels, timeout: float, network: bool = True) -> str:
    """Log in on the serial console (a boot's, or a reboot's); with ``network``, then set up the test network
    (``image.network_setup``). Returns the guest's kernel release."""
    with progress.activity(vm.name, "booting (serial login)"):
        try:
            release = channels.shell.wait_ready(timeout, vm.is_running)
        except LoginFailed as exc:
            raise setup_failed(vm, "logging in on the serial console", str(exc)) from None
    if network:
        set_up_network(vm, channels)
    return release


def set_up_network(vm: Starting, channels: Channels) -> None:
    """With ``image.network_setup``, vmtest's addresses on the guest's NICs and ``/etc/hosts``, over its shell."""
    script = vm.network.setup_script
    if not (image_of(vm.config).network_setup and script):
        return
    if vm.network.hosts:
        script += f"cat > /etc/hosts <<'VMTEST_HOSTS'\n{vm.network.hosts}VMTEST_HOSTS\nhostname {vm.name}\n"
    set_up(vm, channels, script, "setting up the test network in the guest (image.network_setup)")


def prepare_disks(vm: Starting, backing: Path | None = None, fresh: bool = False) -> None:
    """The root overlay on the image (or on ``backing``, a snapshot's disk; ``fresh``: a new one even if it
    exists) and the empty disks (:func:`vmtest.vm.disks.empty_disks`)."""
    config = vm.config
    image = image_of(config)
    check_host(config)
    paths = vm.paths
    overlay = root_disk(vm.name, config, paths)
    if image.path is not None and overlay is not None:
        if fresh:
            overlay.unlink(missing_ok=True)
        if not overlay.exists():
            base, base_format = (
                (Path(image.path).absolute(), image.disk_format()) if backing is None else (backing, "qcow2")
            )
            overlay.parent.mkdir(parents=True, exist_ok=True)
            argv = ["create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), str(overlay)]
            qemu_img(argv, "creating the overlay on the foreign image", vm.name, vm.logger)
    empty_disks(vm.name, config, paths, vm.logger, fresh)


class ForeignBoot(Boots):
    """The start path of a foreign machine: an overlay on the image (``fresh``: a new one even if one exists),
    then the firmware (or the given kernel) boots; ready when the serial shell logged in."""

    name = "foreign boot"

    def __init__(self, fresh: bool = False) -> None:
        self.fresh = fresh

    def prepare(self, vm: Starting) -> Launch:
        prepare_disks(vm, fresh=self.fresh)
        if vm.efi_vars is not None:
            efivars.prepare(vm.name, vm.config, vm.efi_vars, vm.logger)
        self.start_tpm(vm, fresh=self.fresh)
        return Launch(paused=True)

    def until_ready(self, vm: Starting, channels: Channels, timeout: float) -> str:
        return wait_for_login(vm, channels, timeout)


class NoShell:
    """The shell of a foreign machine with ``image.shell="none"``: ready at once; every command an error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.setup_done = False

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> str:
        return "unknown"

    def run(self, command: str, timeout: float) -> Result:
        raise MachineError(self.name, f"running {command!r}", NO_SHELL)

    def send_only(self, command: str) -> None:
        raise MachineError(self.name, f"running {command!r}", NO_SHELL)

    def close(self) -> None:
        pass


def _muter(console: SerialConsole) -> Callable[[bool], None]:
    before = [console.echo]

    def mute(on: bool) -> None:
        if on:
            before[0], console.echo = console.echo, False
        else:
            console.echo = before[0]

    return mute


class ForeignBackend:
    """Like :class:`vmtest.vm.qemu_backend.QemuBackend`, but the shell is logged in on the serial console."""

    def __init__(self, image: ForeignImage) -> None:
        from vmtest.vm.qemu_backend import QemuBackend

        self.image = image
        self._spawner = QemuBackend()

    def spawn(self, argv: Sequence[str], output: Path, logger: logging.Logger, stdin: Path | None = None) -> Process:
        return self._spawner.spawn(argv, output, logger, stdin)

    def attach(
        self, name: str, paths: MachinePaths, logger: logging.Logger, alive: Callable[[], bool], echo: bool
    ) -> Channels:
        monitor, console = open_monitor(name, paths, logger, alive, echo)
        shell: SerialShell | NoShell
        if self.image.shell == "serial":
            # The frames' lines stay out of the log (console.log and the failure reports' tails keep them).
            shell = SerialShell(name, console.write, login_of(self.image), logger, mute=_muter(console))
            console.subscribe(shell.feed)
        else:
            shell = NoShell(name)
        try:
            console.attach(connect_unix(paths.serial, alive))
            agent = hold_agent(paths, alive)
        except ChannelError:
            monitor.close()
            console.detach()
            raise
        return Channels(monitor, console, shell, agent)
