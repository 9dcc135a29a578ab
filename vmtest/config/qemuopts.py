"""The ``virtualisation.qemu.*`` options: how QEMU itself is run (the :class:`QemuOptions` record of
:class:`vmtest.config.virtualisation.Virtualisation`), each declared once as its fields are.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmtest.config.declare import documented, option, options_of, options_record
from vmtest.config.records import Drive, drive_list
from vmtest.config.validators import argv_list, boolean, choice, optional_str_list, string
from vmtest.core.contract import DEFAULT_QEMU_BINARY

DISK_INTERFACES = ("virtio", "scsi", "ide")

IT = "tests/integration/test_options.py"


@documented
@dataclass(frozen=True)
@options_of("virtualisation.qemu", IT, nixos=True)
class QemuOptions:
    """``virtualisation.qemu.*``: how QEMU itself is run."""

    binary: str = option(
        DEFAULT_QEMU_BINARY,
        string,
        nixos="virtualisation.qemu.package",
        proof="tests/unit/test_qemu_argv.py::test_custom_qemu_binary_and_resolution",
    )
    """QEMU system emulator to run (name on PATH or absolute path); the analogue of the seed's package option."""
    options: tuple[str, ...] = option((), argv_list, proof="test_qemu_options_and_consoles")
    """Extra QEMU arguments, each entry split like shell words (e.g. "-vga std"); appended after vmtest's own."""
    consoles: tuple[str, ...] | None = option(None, optional_str_list, proof="test_qemu_options_and_consoles")
    """Kernel console= devices, primary last. Default: tty0 then ttyS0,115200n8 when graphics is on, ttyS0 alone when
    off. The serial port stays primary even with graphics (the seed puts tty0 last) because the driver's log and failure
    reports read the serial console."""
    networking_options: tuple[str, ...] = option((), argv_list, proof="test_networking_options")
    """Extra networking arguments for QEMU (split like shell words), added after vmtest's NICs."""
    drives: tuple[Drive, ...] = option((), drive_list, proof="test_drives")
    """Extra drives: file, drive_extra_opts, device_extra_opts, name (unique). The root disk and empty disks are added
    by vmtest."""
    disk_interface: str = option("virtio", choice(DISK_INTERFACES), proof="test_disk_interface")
    """Bus of the disks: virtio (virtio-blk), scsi (virtio-scsi; the seed uses an emulated LSI controller, slower under
    TCG) or ide. (The kernel's read-only module disk is always virtio-blk, after these.)"""
    guest_agent: bool = option(
        True, boolean, nixos="virtualisation.qemu.guestAgent.enable", proof="test_guest_agent_and_virtio_keyboard"
    )
    """Run qemu-guest-agent in the guest on its own virtio-serial port; Machine.guest_agent(cmd) talks to it."""
    virtio_keyboard: bool = option(True, boolean, proof="test_guest_agent_and_virtio_keyboard")
    """Add a virtio-keyboard device."""


qemu_record = options_record(QemuOptions, "expected a dict of qemu options or vmtest.options.QemuOptions")
