"""QEMU's command line as pure functions of (configuration, paths).

Nothing here touches the file system or starts anything: every function
returns argv fragments, pinned by unit tests. ``machine_argv`` assembles the
whole command line; each ``*_args`` function owns one concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import MachineConfig

DEFAULT_QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class MachinePaths:
    """Where one machine's per-run files live (all inside its state directory)."""

    state_dir: Path

    @property
    def disk(self) -> Path:
        return self.state_dir / "disk.qcow2"

    @property
    def qmp(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def shell(self) -> Path:
        return self.state_dir / "shell.sock"

    @property
    def serial(self) -> Path:
        return self.state_dir / "serial.sock"

    @property
    def xchg(self) -> Path:
        """Host side of the 9p share mounted at /tmp/xchg in the guest."""
        return self.state_dir / "xchg"

    @property
    def qemu_log(self) -> Path:
        return self.state_dir / "qemu.log"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"


@dataclass(frozen=True)
class Boot:
    """The direct-boot inputs: kernel, initrd and the root device."""

    kernel: Path
    initrd: Path


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise ValueError(f"unknown accelerator {accel!r}")


def kernel_params(name: str, config: MachineConfig) -> list[str]:
    """The kernel command line; the primary console (the serial port) comes last."""
    consoles = ["console=tty0", "console=ttyS0,115200"] if config.virtualisation.graphics else ["console=ttyS0,115200"]
    return [
        "root=/dev/vda",
        *consoles,
        "panic=-1",
        f"systemd.hostname={name}",
        "systemd.show_status=auto",
        "rd.udev.log_level=3",
        "net.ifnames=0",
        *config.kernel_params,
    ]


def boot_args(boot: Boot, params: list[str]) -> list[str]:
    return ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", " ".join(params)]


def disk_args(paths: MachinePaths) -> list[str]:
    return [
        "-drive", f"file={paths.disk},format=qcow2,if=none,id=root,cache=writeback,discard=unmap",
        "-device", "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    ]


def channel_args(paths: MachinePaths) -> list[str]:
    """QMP, the serial console and the backdoor's virtio console, each a unix socket."""
    return [
        "-chardev", f"socket,id=qmp,path={paths.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=serial0,path={paths.serial},server=on,wait=off",
        "-serial", "chardev:serial0",
        "-device", "virtio-serial-pci,id=virtio-serial0",
        "-chardev", f"socket,id=shell,path={paths.shell},server=on,wait=off",
        "-device", "virtconsole,chardev=shell,id=backdoor",
    ]


XCHG_GUEST_PATH = "/tmp/xchg"


def share_args(paths: MachinePaths) -> list[str]:
    """The host<->guest exchange directory (9p, mounted at /tmp/xchg by the image)."""
    return [
        "-fsdev", f"local,id=xchg,path={paths.xchg},security_model=none",
        "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    ]


def display_args(config: MachineConfig) -> list[str]:
    if not config.virtualisation.graphics:
        return ["-display", "none", "-vga", "none"]
    width, height = config.virtualisation.resolution
    return ["-display", "none", "-device", f"VGA,xres={width},yres={height}"]


def machine_argv(
    name: str,
    config: MachineConfig,
    boot: Boot,
    paths: MachinePaths,
    accel: str,
    qemu: str = DEFAULT_QEMU,
    network: Sequence[str] = (),
) -> list[str]:
    """The full QEMU command line of machine ``name``; QEMU starts paused (``-S``).

    ``network`` is the NIC argv from :func:`vmtest.network.nic_args`.
    """
    virt = config.virtualisation
    return [
        qemu,
        "-name", f"{name},process=vmtest-{name}",
        "-nodefaults", "-no-user-config", "-S",
        "-machine", "pc",
        *accel_args(accel),
        "-m", str(virt.memory_size),
        "-smp", str(virt.cores),
        *boot_args(boot, kernel_params(name, config)),
        *disk_args(paths),
        *channel_args(paths),
        *share_args(paths),
        *network,
        *display_args(config),
        "-device", "virtio-rng-pci",
        "-rtc", "base=utc",
    ]


def probe_argv(accel: str, boot: Boot, qemu: str = DEFAULT_QEMU) -> list[str]:
    """A tiny guest that prints ``PROBE-OK`` on the serial port and powers off."""
    return [
        qemu, "-nodefaults", "-no-user-config", "-machine", "pc", *accel_args(accel),
        "-m", "256", "-display", "none", "-serial", "stdio", "-no-reboot",
        *boot_args(boot, ["console=ttyS0", "vmtest.probe", "panic=-1", "quiet"]),
    ]
