"""``MachineConfig(image=ForeignImage(...))``: a bootable disk image vmtest did not build (declared once).

Such a machine boots the image's own boot loader (QEMU's firmware reads the
disk), or a kernel and initrd given here (direct boot, e.g. pulled out of
the image, or an installer's); the image file is never written (the machine
gets a qcow2 overlay on it). Commands reach the guest through a shell
logged in on its serial console (:mod:`vmtest.vm.serialshell`), not through
vmtest's backdoor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmtest.config.declare import documented, from_dict, option, options_of
from vmtest.config.validators import boolean, choice, optional_string, string
from vmtest.core.errors import ConfigError

FORMATS = ("auto", "qcow2", "raw")
SHELLS = ("serial", "none")
PROOF = "tests/integration/test_foreign.py"
QCOW2_MAGIC = b"QFI\xfb"


def _regex(name: str, value: Any) -> str:
    text = string(name, value)
    try:
        re.compile(text.encode())
    except re.error as exc:
        raise ConfigError(name, value, f"not a valid regular expression: {exc}") from None
    return text


def _prompt(default: str) -> Any:
    """A console prompt option: a regular expression of the serial console's bytes (the serial shell's login)."""
    return option(default, _regex, proof=f"{PROOF}::test_foreign_debian")


def _host_file(name: str, value: Any) -> Any:
    if value is None:
        return None
    path = string(name, value)
    if not os.path.isfile(path):
        raise ConfigError(name, value, "no such file on the host", "give the path of an existing file")
    return path


@documented
@dataclass(frozen=True)
@options_of("image", PROOF)
class ForeignImage:
    """A disk image vmtest did not build, driven over its serial console (``MachineConfig(image=...)``)."""

    path: str | None = option(None, _host_file, proof="test_foreign_debian")
    """The disk image file (qcow2 or raw), attached as the first disk on qemu.disk_interface. Never written: the machine
    writes to a qcow2 overlay in its state directory. None: no disk (e.g. an installer booted from kernel and
    initrd)."""
    format: str = option("auto", choice(FORMATS), proof="tests/unit/test_foreign_config.py::test_format_detection")
    """The image's format: qcow2, raw, or auto (qcow2 when the file starts with the qcow2 magic, else raw)."""
    kernel: str | None = option(None, _host_file, proof="test_foreign_debian")
    """Boot this kernel directly (QEMU -kernel, command line from MachineConfig.kernel_params only) instead of the
    image's own boot loader. None: the firmware boots the disk."""
    initrd: str | None = option(None, _host_file, proof="test_foreign_debian")
    """The initrd for kernel (direct boot only)."""
    shell: str = option("serial", choice(SHELLS), proof="test_installer_screens")
    """How commands reach the guest: serial (log in on the serial console ttyS0 and run each command framed there) or
    none (no commands: screens, keys, QMP and the console log only; command verbs say why)."""
    user: str = option("root", string, proof="test_foreign_debian")
    """The user the serial shell logs in as."""
    password: str | None = option(None, optional_string, proof="test_foreign_debian")
    """That user's password. None: no password is expected (autologin, or an account without one); a password prompt is
    then an error saying so."""
    login_prompt: str = _prompt(r"login: ?\Z")
    """Regular expression (of the console's bytes) that means the login prompt is showing."""
    password_prompt: str = _prompt(r"[Pp]assword: ?\Z")
    """Regular expression that means the password prompt is showing."""
    shell_prompt: str = _prompt(r"[#$] ?\Z")
    """Regular expression that means a shell prompt is showing (after logging in, or with autologin)."""
    base64_output: bool = option(False, boolean, proof="test_foreign_debian")
    """Send every command's output as base64: robust against any writer interleaving on the console, a third more bytes.
    Off: the output comes as it is; kernel messages and systemd status lines that land in it are taken out (checked by
    size and CRC: never silently wrong)."""

    network_setup: bool = option(False, boolean, proof="test_foreign_vlan")
    """After logging in, run over the shell what vmtest's own guests get at boot: the test network's NIC names and
    addresses (192.168.<vlan>.<node>) with ip (iproute2), /etc/hosts naming every node, the host name. Off: the guest
    configures its own network (its NICs have the MACs 52:54:00:12:<vlan>:<node>)."""

    def __post_init__(self) -> None:
        # the checks across fields, after each field's own (options_of validates them first)
        if self.path is None and self.kernel is None:
            raise ConfigError(
                "image", self, "neither a disk image (path) nor a kernel to boot", "give path=, or kernel= and initrd="
            )
        if self.initrd is not None and self.kernel is None:
            raise ConfigError("image.initrd", self.initrd, "an initrd is only used with kernel= (direct boot)")

    def disk_format(self) -> str:
        """``format``, with auto resolved by reading the file's first bytes."""
        if self.format != "auto" or self.path is None:
            return self.format
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise ConfigError("image.path", self.path, f"cannot be read: {exc}") from None
        return "qcow2" if magic == QCOW2_MAGIC else "raw"


def foreign_image(name: str, value: Any) -> ForeignImage | None:
    if value is None or isinstance(value, ForeignImage):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ForeignImage(path=os.fspath(value))
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "expected a vmtest.ForeignImage, a dict of its options or an image path")
    return from_dict(ForeignImage, name, value)
