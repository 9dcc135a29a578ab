"""QEMU's command line as pure functions of (configuration, paths).

Nothing here touches the file system or starts anything: every function
returns argv fragments, pinned by unit tests. ``machine_argv`` assembles the
whole command line; each ``*_args`` function owns one concern. The boot half
(accelerator, chipset, firmware, kernel or boot loader, TPM) is
:mod:`vmtest.vm.bootargv`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core.contract import (
    BACKDOOR_PORT,
    CERTS_NAME,
    DEFAULT_QEMU_BINARY,
    FW_CFG_CERTS,
    FW_CFG_SETUP,
    MODULES_PARAM,
    PROBE_PARAM,
    SETUP_NAME,
    TMPFS_ROOT_PARAM,
    USER_NET,
    USER_NIC_MAC,
    XCHG_TAG,
)
from vmtest.vm.bootargv import (
    Boot,
    accel_args,
    boot_args,
    boot_loader_args,
    firmware_args,
    machine_type_args,
    tpm_args,
    vmgenid_args,
)
from vmtest.vm.hostmem import balloon_args
from vmtest.vm.paths import MachinePaths, root_disk


@dataclass(frozen=True)
class Launch:
    """How this launch differs from a test's default one (paused, serial on a socket, no extras).

    ``run-vm`` asks for a running machine with its serial console on stdio,
    a user-mode NIC (``user_net_extra`` appended to its options) and the
    ``shared`` share; a restore from a snapshot adds ``incoming``.
    """

    paused: bool = True  # -S: channels attach before the guest runs, no console line is lost
    serial_stdio: bool = False  # the serial console on QEMU's stdio (with the monitor mux) instead of a socket
    user_net: bool = False  # add the user-mode NIC even without forwarded ports
    user_net_extra: str = ""  # appended verbatim to the user-mode netdev options
    extra_kernel_params: tuple[str, ...] = ()
    extra_shares: tuple[tuple[str, str], ...] = ()  # (mount tag, host path)
    network: tuple[str, ...] = ()  # VLAN NIC arguments (vmtest.net)
    incoming: str | None = None  # -incoming URI: restore a saved machine instead of booting
    stdin: Path | None = None  # a file QEMU gets as its stdin (a restore's saved state: ``incoming="fd:0"``)


def consoles(config: MachineConfig) -> list[str]:
    """The kernel's consoles, primary last (see the ``qemu.consoles`` option for why serial is last)."""
    virt = config.virtualisation
    if virt.qemu.consoles is not None:
        return list(virt.qemu.consoles)
    return ["tty0", "ttyS0,115200"] if virt.graphics else ["ttyS0,115200"]


# Under TCG, ``-cpu max`` offers SVM/VMX, so udev would load KVM in the guest ~15 s into the boot
# (nested virtualisation under emulation is useless): its messages land on the consoles mid-test.
# Emulated code makes two more boot steps slow (measured with initcall_debug, see README "Boot
# profile"): routing PCI interrupts through ACPI (the AML interpreter evaluates the interrupt link
# devices when virtio_pci enables its devices: ~1.5 s of stage 1 on a loaded host), where QEMU's
# BIOS tables give the same routing (acpi=noirq: ACPI still does power-off, buttons and the
# rest; virtio devices use MSI-X anyway); and the crypto self-tests, run for every algorithm the
# kernel and each loaded module registers (cryptomgr.notests: the algorithms are the same, only
# their boot-time self-check is skipped).
TCG_GUEST_PARAMS = ("module_blacklist=kvm_amd,kvm_intel", "acpi=noirq", "cryptomgr.notests")
# The kernel's boot messages of level info (most of its ~450 lines) stay in `dmesg` and the journal but are
# not printed on the consoles: each line drawn on the framebuffer console (and sent to the serial port) is
# emulated code, and a cold boot to the first command took ~1 s less without them under TCG (medians of
# pairwise differences of interleaved boots; see README "Boot profile"). Notices and worse ("Linux
# version", warnings, errors, panics) are still printed; `kernel_params=["loglevel=8"]` prints everything.
BOOT_LOGLEVEL = "loglevel=6"
# The pc machine always has an IDE controller: unless a disk may be on it, udev does not load its
# drivers (libata, scsi_mod, ata_piix: module loads and an empty bus probe in emulated code). kmod
# reads this parameter as a blacklist: an explicit `modprobe ata_piix` still works.
NO_IDE_PARAM = "modprobe.blacklist=ata_piix,ata_generic"


def stage1_groups(config: MachineConfig, nics: bool = False) -> list[str]:
    """The stage-1 module groups (besides "base") this configuration needs, in load order.

    The disk driver of ``qemu.disk_interface`` (and virtio-blk for the module disk); ``overlay`` for a
    tmpfs-overlay root; ``net`` when the machine has NICs (``nics``: VLANs, the user-mode NIC or
    ``networking_options``); ``display`` with graphics. Everything else (the keyboard, the RNG, the IDE
    controller of a virtio machine...) is left to udev.
    """
    virt = config.virtualisation
    return [
        virt.qemu.disk_interface,
        *(["modules"] if virt.qemu.disk_interface != "virtio" else []),  # (virtio_blk is in "virtio")
        *(["overlay"] if virt.disk_image is None and virt.use_default_filesystems else []),
        *(["net"] if nics or virt.user_network or virt.qemu.networking_options else []),
        *(["display"] if virt.graphics else []),
    ]


def ide_unused(config: MachineConfig) -> bool:
    """No disk of this machine can be on the IDE controller: none on the ``ide`` interface, no drives
    and no raw QEMU options (which may add one, e.g. ``-cdrom``)."""
    qemu = config.virtualisation.qemu
    return qemu.disk_interface != "ide" and not qemu.drives and not qemu.options


def kernel_params(config: MachineConfig, accel: str | None = None, nics: bool = False) -> list[str]:
    """The kernel command line; the primary console (the serial port by default) comes last.

    Nothing here names the machine (its host name comes with the per-run set-up), so machines of one
    configuration boot the same kernel command line and can share a booted snapshot. ``nics``: the
    machine has NICs besides the config's own (a test network's VLANs, run-vm's user-mode NIC).
    """
    virt = config.virtualisation
    return [
        f"root={virt.primary_root_device}",
        *(f"console={c}" for c in consoles(config)),
        "panic=-1",
        "systemd.show_status=auto",
        BOOT_LOGLEVEL,
        "rd.udev.log_level=3",
        "net.ifnames=0",
        f"{MODULES_PARAM}={','.join(stage1_groups(config, nics))}",
        *([NO_IDE_PARAM] if ide_unused(config) else []),
        *([TMPFS_ROOT_PARAM] if virt.disk_image is None and virt.use_default_filesystems else []),
        *(TCG_GUEST_PARAMS if accel == "tcg" else ()),
        *config.kernel_params,
    ]


def _opts(pairs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs.items())


class DiskBus:
    """Assigns disks to the configured interface, adding the controller once."""

    def __init__(self, interface: str, q35: bool = False) -> None:
        self.interface = interface
        self.q35 = q35  # IDE disks go on the q35's AHCI ports (one disk each) instead of the pc's IDE buses
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
        if self.q35:
            return ["-device", "ide-hd," + _opts({"bus": f"ide.{self.count - 1}", "drive": drive_id, **extra})]
        bus, unit = divmod(self.count - 1, 2)
        return ["-device", "ide-hd," + _opts({"bus": f"ide.{bus}", "unit": str(unit), "drive": drive_id, **extra})]


def disk_args(
    name: str, config: MachineConfig, paths: MachinePaths, boot: Boot, root: dict[str, str] | None = None
) -> list[str]:
    """Root disk, empty disks and the user's drives, on ``qemu.disk_interface``. ``root``: the root drive's
    options as given (a foreign image's), instead of the overlay on the cached image."""
    virt = config.virtualisation
    bus = DiskBus(virt.qemu.disk_interface, q35=virt.use_secure_boot)
    args: list[str] = []
    if root is not None:
        args += ["-drive", _opts(root), *bus.device("root", {"bootindex": "1"})]
    elif virt.use_default_filesystems:
        disk = root_disk(name, config, paths)
        if disk is None:
            # Nothing persists: the guest overlays a tmpfs on the image; snapshot=on keeps even
            # stray writes off the cached image.
            drive = {"file": str(boot.image), "format": "qcow2", "if": "none", "id": "root", "snapshot": "on"}
        else:
            drive = {
                "file": str(disk),
                "format": "qcow2",
                "if": "none",
                "id": "root",
                "cache": "writeback",
                "discard": "unmap",
                "werror": "report",
            }
        args += ["-drive", _opts(drive), *bus.device("root", {"serial": "root", "bootindex": "1"})]
    for i, _size in enumerate(virt.empty_disk_images):
        drive = {
            "file": str(paths.empty_disk(i)),
            "format": "qcow2",
            "if": "none",
            "id": f"empty{i}",
            "werror": "report",
        }
        args += ["-drive", _opts(drive), *bus.device(f"empty{i}", {"serial": f"empty{i}"})]
    for i, d in enumerate(virt.qemu.drives):
        drive = {**d.drive_extra_opts, "file": d.file, "if": "none", "id": f"drive{i}"}
        args += ["-drive", _opts(drive), *bus.device(f"drive{i}", dict(d.device_extra_opts))]
    return args + module_disk_args(boot)


def module_disk_args(boot: Boot) -> list[str]:
    """The kernel's module disk, read-only, always virtio-blk (stage 1 loads virtio_blk for it), after every
    other disk so that the config's disks keep their names (vda, vdb...)."""
    if boot.modules is None:
        return []
    drive = {"file": str(boot.modules), "format": "qcow2", "if": "none", "id": "modules", "readonly": "on"}
    return ["-drive", _opts(drive), "-device", "virtio-blk-pci,drive=modules,id=modules-disk"]


def channel_args(paths: MachinePaths, config: MachineConfig | None = None, serial_stdio: bool = False) -> list[str]:
    """QMP, the serial console, the backdoor's virtio serial port, a virtio console with a root shell
    for people (hvc0: ``vmtest attach``, ``shell_interact``) and the guest agent, each a unix socket
    (the serial console on stdio, multiplexed with the monitor, when ``serial_stdio``).

    The backdoor is a port rather than a console: QEMU waits for a slow reader of a port's socket
    but drops what a console's socket does not take at once (large outputs lost bytes under load)."""
    serial = (
        ["-serial", "mon:stdio"]
        if serial_stdio
        else [
            "-chardev",
            f"socket,id=serial0,path={paths.serial},server=on,wait=off",
            "-serial",
            "chardev:serial0",
        ]
    )
    args = [
        "-chardev",
        f"socket,id=qmp,path={paths.qmp},server=on,wait=off",
        "-mon",
        "chardev=qmp,mode=control",
        *serial,
        "-device",
        "virtio-serial-pci,id=virtio-serial0",
        "-chardev",
        f"socket,id=shell,path={paths.shell},server=on,wait=off",
        "-device",
        f"virtserialport,chardev=shell,name={BACKDOOR_PORT},id=backdoor",
        "-chardev",
        f"socket,id=attach,path={paths.attach},server=on,wait=off",
        "-device",
        "virtconsole,chardev=attach,id=attach",
    ]
    if config is not None and config.virtualisation.qemu.guest_agent:
        args += [
            "-chardev",
            f"socket,id=qga0,path={paths.agent},server=on,wait=off",
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    return args


def _share(tag: str, path: str, security_model: str = "none") -> list[str]:
    return [
        "-fsdev",
        f"local,id=fs-{tag},path={path},security_model={security_model}",
        "-device",
        f"virtio-9p-pci,fsdev=fs-{tag},mount_tag={tag}",
    ]


def share_args(
    paths: MachinePaths, config: MachineConfig | None = None, extra: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The host<->guest exchange directory (9p, mounted at /tmp/xchg by the image), ``shared_directories``
    and ``extra`` (tag, host path) shares."""
    args = _share(XCHG_TAG, str(paths.xchg))
    if config is not None:
        for tag, share in config.virtualisation.shared_directories.items():
            args += _share(tag, share.source, share.security_model)
    for tag, path in extra:
        args += _share(tag, path)
    return args


def setup_args(paths: MachinePaths, config: MachineConfig) -> list[str]:
    """The per-run set-up script (and the host's CA bundle with ``use_host_certs``) as fw_cfg entries:
    the host writes them into the exchange directory before the launch, QEMU reads them at once."""
    entries = [(FW_CFG_SETUP, paths.xchg / SETUP_NAME)]
    if config.virtualisation.use_host_certs:
        entries.append((FW_CFG_CERTS, paths.xchg / CERTS_NAME))
    args: list[str] = []
    for name, path in entries:
        args += ["-fw_cfg", f"name={name},file={str(path).replace(',', ',,')}"]
    return args


def user_net_args(config: MachineConfig, force: bool = False, extra: str = "") -> list[str]:
    """The user-mode (SLiRP) NIC: only when ports are forwarded (or ``force``); restrict=on unless
    restrict_network=False; ``extra`` is appended to the netdev options as is."""
    virt = config.virtualisation
    if not (virt.user_network or force):
        return []
    opts = ["user", "id=user0", f"net={USER_NET}", f"restrict={'on' if virt.restrict_network else 'off'}"]
    for p in virt.forward_ports:
        if p.from_ == "host":
            opts.append(f"hostfwd={p.proto}:{p.host_address}:{p.host_port}-{p.guest_address}:{p.guest_port}")
        else:
            opts.append(f"guestfwd={p.proto}:{p.guest_address}:{p.guest_port}-cmd:nc {p.host_address} {p.host_port}")
    return ["-netdev", ",".join(opts) + extra, "-device", f"virtio-net-pci,netdev=user0,mac={USER_NIC_MAC},id=nic-user"]


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


def head_args(name: str, config: MachineConfig, boot: Boot, accel: str, launch: Launch) -> list[str]:
    """The start of every machine's command line (vmtest's and foreign ones): the binary, the process name, a
    start paused or from a saved state, the machine type, accelerator and firmware, memory and CPUs."""
    virt = config.virtualisation
    return [
        virt.qemu.binary,
        "-name",
        f"{name},process=vmtest-{name}",
        "-nodefaults",
        "-no-user-config",
        *(["-S"] if launch.paused else []),
        *(["-incoming", launch.incoming] if launch.incoming else []),
        *machine_type_args(config),
        *accel_args(accel),
        *firmware_args(config, boot),
        "-m",
        str(virt.memory_size),
        "-smp",
        str(virt.cores),
    ]


def machine_argv(
    name: str,
    config: MachineConfig,
    boot: Boot,
    paths: MachinePaths,
    accel: str,
    launch: Launch = Launch(),
) -> list[str]:
    """The full QEMU command line of machine ``name`` for one ``launch``."""
    virt = config.virtualisation
    nics = bool(launch.network) or launch.user_net
    params = [*kernel_params(config, accel, nics), *launch.extra_kernel_params]
    return [
        *head_args(name, config, boot, accel, launch),
        *boot_args(boot, params, config),
        *disk_args(name, config, paths, boot),
        *channel_args(paths, config, launch.serial_stdio),
        *share_args(paths, config, launch.extra_shares),
        *setup_args(paths, config),
        *user_net_args(config, launch.user_net, launch.user_net_extra),
        *launch.network,
        *extra_args(virt.qemu.networking_options),
        *display_args(config),
        *input_args(config),
        *tpm_args(config, paths),
        "-device",
        "virtio-rng-pci",
        *balloon_args(),
        *vmgenid_args(config),
        "-rtc",
        "base=utc",
        *extra_args(virt.qemu.options),
        *boot_loader_args(config, params),
    ]


def probe_argv(accel: str, boot: Boot, qemu: str = DEFAULT_QEMU_BINARY) -> list[str]:
    """A tiny guest that prints ``PROBE-OK`` on the serial port and powers off."""
    return [
        qemu,
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "pc",
        *accel_args(accel),
        "-m",
        "256",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        *boot_args(boot, ["console=ttyS0", PROBE_PARAM, "panic=-1", "quiet"]),
    ]
