"""QEMU's command line as pure functions of (configuration, paths).

Nothing here touches the file system or starts anything: every function
returns argv fragments, pinned by unit tests. ``machine_argv`` assembles the
whole command line; each ``*_args`` function owns one concern.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig

DEFAULT_QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class MachinePaths:
    """Where one machine's per-run files live (all inside its state directory)."""

    state_dir: Path

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
    def agent(self) -> Path:
        """The qemu-guest-agent's virtio-serial port."""
        return self.state_dir / "qga.sock"

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

    def empty_disk(self, index: int) -> Path:
        return self.state_dir / f"empty{index}.qcow2"


def root_disk(name: str, config: MachineConfig, paths: MachinePaths) -> Path | None:
    """The machine's writable root overlay, or None when nothing persists (``disk_image=None``)."""
    template = config.virtualisation.disk_image
    if template is None:
        return None
    return Path(template.format(state_dir=paths.state_dir, name=name))


@dataclass(frozen=True)
class Boot:
    """The direct-boot inputs: kernel, initrd, and the cached root image (the overlays' base)."""

    kernel: Path
    initrd: Path
    image: Path | None = None


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise ValueError(f"unknown accelerator {accel!r}")


def consoles(config: MachineConfig) -> list[str]:
    """The kernel's consoles, primary last (see the ``qemu.consoles`` option for why serial is last)."""
    virt = config.virtualisation
    if virt.qemu.consoles is not None:
        return list(virt.qemu.consoles)
    return ["tty0", "ttyS0,115200"] if virt.graphics else ["ttyS0,115200"]


# Under TCG, ``-cpu max`` offers SVM/VMX, so udev would load KVM in the guest ~15 s into the boot
# (nested virtualisation under emulation is useless): its messages land on the consoles mid-test.
TCG_GUEST_PARAMS = ("module_blacklist=kvm_amd,kvm_intel",)


def kernel_params(name: str, config: MachineConfig, accel: str | None = None) -> list[str]:
    """The kernel command line; the primary console (the serial port by default) comes last."""
    virt = config.virtualisation
    return [
        f"root={virt.primary_root_device}",
        *(f"console={c}" for c in consoles(config)),
        "panic=-1",
        f"systemd.hostname={name}",
        "systemd.show_status=auto",
        "rd.udev.log_level=3",
        "net.ifnames=0",
        *(["vmtest.root=tmpfs-overlay"] if virt.disk_image is None and virt.use_default_filesystems else []),
        *(TCG_GUEST_PARAMS if accel == "tcg" else ()),
        *config.kernel_params,
    ]


def boot_args(boot: Boot, params: list[str], config: MachineConfig | None = None) -> list[str]:
    initrd = boot.initrd
    if config is not None and config.virtualisation.direct_boot_initrd is not None:
        initrd = Path(config.virtualisation.direct_boot_initrd)
    return ["-kernel", str(boot.kernel), "-initrd", str(initrd), "-append", " ".join(params)]


def _opts(pairs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs.items())


class DiskBus:
    """Assigns disks to the configured interface, adding the controller once."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.count = 0

    def device(self, drive_id: str, extra: dict[str, str]) -> list[str]:
        args: list[str] = []
        self.count += 1
        # The IDE limit is checked at config time (Virtualisation); this guards direct callers.
        if self.interface == "virtio":
            return ["-device", "virtio-blk-pci," + _opts({"drive": drive_id, **extra})]
        if self.interface == "scsi":
            if self.count == 1:
                args += ["-device", "virtio-scsi-pci,id=scsi0"]
            return args + ["-device", "scsi-hd," + _opts({"bus": "scsi0.0", "drive": drive_id, **extra})]
        # ide: the pc machine's two IDE buses, two units each
        if self.count > 4:
            raise ValueError("the IDE interface holds at most 4 disks (root, empty disks and drives together)")
        bus, unit = divmod(self.count - 1, 2)
        return ["-device", "ide-hd," + _opts({"bus": f"ide.{bus}", "unit": str(unit), "drive": drive_id, **extra})]


def disk_args(name: str, config: MachineConfig, paths: MachinePaths, boot: Boot) -> list[str]:
    """Root disk, empty disks and the user's drives, on ``qemu.disk_interface``."""
    virt = config.virtualisation
    bus = DiskBus(virt.qemu.disk_interface)
    args: list[str] = []
    if virt.use_default_filesystems:
        disk = root_disk(name, config, paths)
        if disk is None:
            # Nothing persists: the guest overlays a tmpfs on the image; snapshot=on keeps even
            # stray writes off the cached image.
            drive = {"file": str(boot.image), "format": "qcow2", "if": "none", "id": "root", "snapshot": "on"}
        else:
            drive = {"file": str(disk), "format": "qcow2", "if": "none", "id": "root", "cache": "writeback",
                     "discard": "unmap", "werror": "report"}
        args += ["-drive", _opts(drive), *bus.device("root", {"serial": "root", "bootindex": "1"})]
    for i, _size in enumerate(virt.empty_disk_images):
        drive = {"file": str(paths.empty_disk(i)), "format": "qcow2", "if": "none", "id": f"empty{i}",
                 "werror": "report"}
        args += ["-drive", _opts(drive), *bus.device(f"empty{i}", {"serial": f"empty{i}"})]
    for i, d in enumerate(virt.qemu.drives):
        drive = {**d.drive_extra_opts, "file": d.file, "if": "none", "id": f"drive{i}"}
        args += ["-drive", _opts(drive), *bus.device(f"drive{i}", dict(d.device_extra_opts))]
    return args


def channel_args(paths: MachinePaths, config: MachineConfig | None = None) -> list[str]:
    """QMP, the serial console, the backdoor's virtio console and the guest agent, each a unix socket."""
    args = [
        "-chardev", f"socket,id=qmp,path={paths.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=serial0,path={paths.serial},server=on,wait=off",
        "-serial", "chardev:serial0",
        "-device", "virtio-serial-pci,id=virtio-serial0",
        "-chardev", f"socket,id=shell,path={paths.shell},server=on,wait=off",
        "-device", "virtconsole,chardev=shell,id=backdoor",
    ]
    if config is not None and config.virtualisation.qemu.guest_agent:
        args += [
            "-chardev", f"socket,id=qga0,path={paths.agent},server=on,wait=off",
            "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    return args


XCHG_GUEST_PATH = "/tmp/xchg"


def share_args(paths: MachinePaths, config: MachineConfig | None = None) -> list[str]:
    """The host<->guest exchange directory (9p, mounted at /tmp/xchg by the image) and ``shared_directories``."""
    args = [
        "-fsdev", f"local,id=xchg,path={paths.xchg},security_model=none",
        "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    ]
    if config is not None:
        for tag, share in config.virtualisation.shared_directories.items():
            args += [
                "-fsdev", f"local,id=fs-{tag},path={share.source},security_model={share.security_model}",
                "-device", f"virtio-9p-pci,fsdev=fs-{tag},mount_tag={tag}",
            ]
    return args


USER_NIC_MAC = "52:54:00:12:34:56"
USER_GUEST_IP = "10.0.2.15"


def user_net_args(config: MachineConfig, force: bool = False) -> list[str]:
    """The user-mode (SLiRP) NIC: only when ports are forwarded (or ``force``); restrict=on unless
    restrict_network=False."""
    virt = config.virtualisation
    if not (virt.user_network or force):
        return []
    opts = ["user", "id=user0", "net=10.0.2.0/24", f"restrict={'on' if virt.restrict_network else 'off'}"]
    for p in virt.forward_ports:
        if p.from_ == "host":
            opts.append(f"hostfwd={p.proto}:{p.host_address}:{p.host_port}-{p.guest_address}:{p.guest_port}")
        else:
            opts.append(f"guestfwd={p.proto}:{p.guest_address}:{p.guest_port}-cmd:nc {p.host_address} {p.host_port}")
    return ["-netdev", ",".join(opts), "-device", f"virtio-net-pci,netdev=user0,mac={USER_NIC_MAC},id=nic-user"]


def display_args(config: MachineConfig) -> list[str]:
    if not config.virtualisation.graphics:
        return ["-display", "none", "-vga", "none"]
    width, height = config.virtualisation.resolution
    return ["-display", "none", "-device", f"VGA,xres={width},yres={height}"]


def input_args(config: MachineConfig) -> list[str]:
    return ["-device", "virtio-keyboard-pci"] if config.virtualisation.qemu.virtio_keyboard else []


def extra_args(entries: Sequence[str]) -> list[str]:
    """``qemu.options`` / ``qemu.networking_options``: each entry split like shell words."""
    return [arg for entry in entries for arg in shlex.split(entry)]


def machine_argv(
    name: str,
    config: MachineConfig,
    boot: Boot,
    paths: MachinePaths,
    accel: str,
    network: Sequence[str] = (),
) -> list[str]:
    """The full QEMU command line of machine ``name``; QEMU starts paused (``-S``).

    ``network`` is the VLAN NIC argv from :func:`vmtest.network.nic_args`.
    """
    virt = config.virtualisation
    return [
        virt.qemu.binary,
        "-name", f"{name},process=vmtest-{name}",
        "-nodefaults", "-no-user-config", "-S",
        "-machine", "pc",
        *accel_args(accel),
        "-m", str(virt.memory_size),
        "-smp", str(virt.cores),
        *boot_args(boot, kernel_params(name, config, accel), config),
        *disk_args(name, config, paths, boot),
        *channel_args(paths, config),
        *share_args(paths, config),
        *user_net_args(config),
        *network,
        *extra_args(virt.qemu.networking_options),
        *display_args(config),
        *input_args(config),
        "-device", "virtio-rng-pci",
        "-rtc", "base=utc",
        *extra_args(virt.qemu.options),
    ]


def probe_argv(accel: str, boot: Boot, qemu: str = DEFAULT_QEMU) -> list[str]:
    """A tiny guest that prints ``PROBE-OK`` on the serial port and powers off."""
    return [
        qemu, "-nodefaults", "-no-user-config", "-machine", "pc", *accel_args(accel),
        "-m", "256", "-display", "none", "-serial", "stdio", "-no-reboot",
        *boot_args(boot, ["console=ttyS0", "vmtest.probe", "panic=-1", "quiet"]),
    ]
