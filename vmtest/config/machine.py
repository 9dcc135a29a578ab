"""Machine configurations: what a test declares about each VM.

``MachineConfig`` is immutable and validated on construction; every field is
declared once with :func:`~vmtest.config.declare.option` (documentation and
validator), and every problem is a :class:`~vmtest.core.errors.ConfigError`
naming the field, the value, why it is wrong and how to fix it. The
image-relevant fields feed the image store's content key
(:meth:`MachineConfig.image_inputs`); ``virtualisation`` holds the
``qemu-vm.nix``-style options (:mod:`vmtest.config.virtualisation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vmtest.config.declare import check_keys, declared, default_of, documented, field_names, option, validate_fields
from vmtest.config.foreign import ForeignImage, foreign_image
from vmtest.config.validators import (
    guest_file_path,
    int_range,
    keyword_str_list,
    mapping,
    package_list,
    suite_name,
    unit_list,
    unit_name,
)
from vmtest.config.virtualisation import Virtualisation
from vmtest.core.errors import ConfigError


def host_suite() -> str:
    """The Debian release of the host (``VERSION_CODENAME``), or bookworm."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    ids = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if ids.get("ID", "").strip('"') == "debian" and ids.get("VERSION_CODENAME"):
        return ids["VERSION_CODENAME"].strip('"')
    return "bookworm"


@dataclass(frozen=True)
class File:
    """A file to place in the guest image: its content and permission bits (``mode``, default ``0o644``)."""

    content: str | bytes
    mode: int = 0o644

    def data(self) -> bytes:
        """The content as bytes (text is encoded as UTF-8)."""
        return self.content.encode() if isinstance(self.content, str) else self.content


# -- the validators of the fields that build records ----------------------------------------------


def _units(name: str, value: Any) -> Mapping[str, str]:
    units = {}
    for unit, text in mapping(name, value).items():
        full = unit_name(name, unit)
        if not isinstance(text, str):
            raise ConfigError(f"{name}[{unit!r}]", text, "unit file text must be a string")
        units[full] = text
    return MappingProxyType(units)


def _files(name: str, value: Any) -> Mapping[str, File]:
    files = {}
    for path, content in mapping(name, value).items():
        gpath = guest_file_path(name, path)
        if isinstance(content, (str, bytes)):
            content = File(content)
        if not isinstance(content, File):
            raise ConfigError(
                f"{name}[{path!r}]",
                content,
                "file content must be str, bytes or vmtest.File",
                "e.g. File('text', mode=0o755)",
            )
        if not isinstance(content.content, (str, bytes)):
            raise ConfigError(f"{name}[{path!r}].content", content.content, "must be str or bytes")
        if not isinstance(content.mode, int) or not 0 <= content.mode <= 0o7777:
            raise ConfigError(f"{name}[{path!r}].mode", content.mode, "must be an int permission like 0o644")
        files[gpath] = content
    return MappingProxyType(files)


def _kernel_params(name: str, value: Any) -> tuple[str, ...]:
    return keyword_str_list(name, tuple(value.split()) if isinstance(value, str) else value)


def _virtualisation(name: str, value: Any) -> Virtualisation:
    if isinstance(value, Mapping):
        value = Virtualisation.from_dict(dict(value))
    if not isinstance(value, Virtualisation):
        raise ConfigError(name, value, "expected a dict of options or vmtest.Virtualisation")
    return value


# virtualisation options a foreign image cannot honour: each needs vmtest's guest side (its set-up at boot,
# its stage 1, its own image) -> what to do instead.
NOT_FOR_FOREIGN = {
    "shared_directories": "mount the 9p share in the guest yourself (qemu.options: -fsdev/-device virtio-9p-pci)",
    "file_systems": "mount them in the guest (its fstab, or a command)",
    "use_host_certs": "copy the bundle with copy_from_host",
    "disk_size": "grow the image with qemu-img resize and the guest's own tools",
    "root_device": "give root= in kernel_params (direct boot) or the image's boot loader configuration",
    "direct_boot_initrd": "give image.initrd",
    "use_boot_loader": "a foreign image boots its own boot loader already (leave image.kernel unset)",
    "use_bios_boot": "a foreign image is booted as its disk is laid out",
    "install_boot_loader": "a foreign image is booted as its disk is laid out",
    "boot_partition": "a foreign image is booted as its disk is laid out",
}


def check_foreign_virtualisation(virt: Virtualisation) -> None:
    """ConfigError for an option a foreign machine would ignore (see :data:`NOT_FOR_FOREIGN`)."""
    defaults = Virtualisation()
    for name, fix in NOT_FOR_FOREIGN.items():
        value = getattr(virt, name)
        if value != getattr(defaults, name):
            raise ConfigError(
                f"virtualisation.{name}",
                value,
                "needs vmtest's own guest image; a foreign image (image=...) has none",
                fix,
            )


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@documented
@dataclass(frozen=True, init=False)
class MachineConfig:
    """The declaration of one virtual machine (keyword arguments, all optional)."""

    suite: str = option(host_suite, suite_name, factory=True, default_text="the host's release, else 'bookworm'")
    """Debian release of the guest."""
    packages: tuple[str, ...] = option((), package_list)
    """Debian packages to install (sorted, duplicates dropped)."""
    services: tuple[str, ...] = option((), unit_list)
    """systemd units to start at boot ("nginx" means nginx.service): enabled, or added to multi-user.target when they
    have no [Install] section."""
    units: Mapping[str, str] = option(_empty, _units, factory=True)
    """Unit name -> unit file text, installed in /etc/systemd/system and enabled per its [Install] section (without one
    it runs only when started, or when listed in services)."""
    files: Mapping[str, File] = option(_empty, _files, factory=True)
    """Guest path -> str/bytes content or vmtest.File (content + mode, default 0o644), placed in the image."""
    build_commands: tuple[str, ...] = option((), keyword_str_list)
    """Shell commands run inside the image (chroot) at build time."""
    kernel_params: tuple[str, ...] = option((), _kernel_params)
    """Extra kernel command-line parameters (boot time, not in the image); a string is split on white space."""
    boot_loader_timeout: int = option(0, int_range(0, 3600, " s"))
    """Seconds GRUB shows its menu before it boots the default entry (NixOS's boot.loader.timeout, 5 there; 0 here:
    every second is boot time, and 0 boots at once without drawing the menu). Only with virtualisation.use_boot_loader;
    boot time only (not in the image). A test that reads the menu under TCG gives it long enough for the screen to be
    read and a key sent (e.g. 30)."""
    virtualisation: Virtualisation = option(
        Virtualisation, _virtualisation, factory=True, default_text="Virtualisation()"
    )
    """QEMU-level options: a vmtest.Virtualisation or a dict of its options (see the virtualisation options below)."""
    image: ForeignImage | None = option(
        None, foreign_image, proof="tests/integration/test_foreign.py::test_foreign_debian"
    )
    """A bootable disk image vmtest did not build (vmtest.ForeignImage, a dict of its options, or a path): booted by its
    own boot loader or a given kernel, driven over its serial console (see the image.* rows). None: the Debian image
    vmtest builds from the fields above."""

    def __init__(self, **kwargs: Any) -> None:
        check_keys(field_names(self), kwargs, lambda key: key, "unknown MachineConfig field", "fields")
        for f, _ in declared(self):
            object.__setattr__(self, f.name, kwargs[f.name] if f.name in kwargs else default_of(f))
        validate_fields(self)
        if self.boot_loader_timeout and not self.virtualisation.boots_from_disk:
            raise ConfigError(
                "boot_loader_timeout",
                self.boot_loader_timeout,
                "only a machine that boots through GRUB has a boot menu (virtualisation.use_boot_loader with "
                "direct boot off)",
                "set virtualisation={'use_boot_loader': True}, or remove boot_loader_timeout",
            )
        if self.image is not None:
            for name in ("packages", "services", "units", "files", "build_commands"):
                if getattr(self, name):
                    raise ConfigError(
                        name,
                        getattr(self, name),
                        "a foreign image (image=...) is booted as it is: vmtest builds nothing into it",
                        f"remove {name}, or set it up in the image yourself",
                    )
            check_foreign_virtualisation(self.virtualisation)

    def __hash__(self) -> int:
        return hash(
            tuple(
                tuple(value.items()) if isinstance(value, Mapping) else value
                for value in (getattr(self, f.name) for f in dataclasses.fields(self))
            )
        )

    def image_inputs(self) -> dict[str, Any]:
        """Everything that goes into the guest image, in a canonical JSON-able form."""
        import hashlib

        return {
            "suite": self.suite,
            "packages": sorted(set(self.packages) | set(self.virtualisation.image_packages())),
            "services": list(self.services),
            "units": dict(sorted(self.units.items())),
            "files": {
                path: {"sha256": hashlib.sha256(f.data()).hexdigest(), "mode": f.mode}
                for path, f in sorted(self.files.items())
            },
            "build_commands": list(self.build_commands),
        }

    def replace(self, **changes: Any) -> MachineConfig:
        """A copy with some fields changed (validated again)."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        current.update(changes)
        return MachineConfig(**current)
