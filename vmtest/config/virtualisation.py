"""The ``virtualisation.*`` options, each declared exactly once.

Every option is a field of :class:`Virtualisation` (or of its ``qemu``
sub-record, :class:`QemuOptions`) whose metadata carries its NixOS name,
documentation and validator. Validation, ``from_dict``, the generated option
reference (``vmtest options``) and ``docs/options.md`` all derive from these
declarations; the effect of each option on QEMU's argv lives in
:mod:`vmtest.qemu`, pinned by unit tests. Seed options that have no field
here are listed in :data:`NOT_DECLARED` with the reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import shlex
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from vmtest.core.errors import ConfigError

Validator = Callable[[str, Any], Any]

DEFAULT_QEMU_BINARY = "qemu-system-x86_64"
DEFAULT_DISK_IMAGE = "{state_dir}/{name}.qcow2"
DISK_INTERFACES = ("virtio", "scsi", "ide")
SECURITY_MODELS = ("none", "passthrough", "mapped-xattr", "mapped-file")
USER_NET = ipaddress.ip_network("10.0.2.0/24")


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping (option values must hash: configs are cache keys)."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._data = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __repr__(self) -> str:
        return repr(self._data)


# -- validators -------------------------------------------------------------


def _int_range(lo: int, hi: int, unit: str = "") -> Validator:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, value, f"expected an integer{unit}, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise ConfigError(name, value, f"out of range {lo}..{hi}{unit}")
        return value

    return check


def _bool(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigError(name, value, f"expected True or False, got {type(value).__name__}")
    return value


def _optional_bool(name: str, value: Any) -> Any:
    return None if value is None else _bool(name, value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "expected a non-empty string")
    return value


def _optional(check: Validator) -> Validator:
    return lambda name, value: None if value is None else check(name, value)


def _optional_string(name: str, value: Any) -> Any:
    return None if value is None else _string(name, value)


def _choice(choices: tuple[str, ...]) -> Validator:
    def check(name: str, value: Any) -> Any:
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            raise ConfigError(name, value, "must be one of " + ", ".join(map(repr, choices)),
                              f"did you mean {close[0]!r}?" if close else None)
        return value

    return check


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of strings", f"write [{value!r}]" if isinstance(value, str) else None)
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, value, f"every entry must be a string, {item!r} is a {type(item).__name__}")
    return tuple(value)


def _optional_str_list(name: str, value: Any) -> Any:
    return None if value is None else _str_list(name, value)


def _argv_list(name: str, value: Any) -> tuple[str, ...]:
    """Extra QEMU arguments: each entry is split like a shell word list (``"-vga std"``)."""
    items = _str_list(name, value)
    for item in items:
        try:
            shlex.split(item)
        except ValueError as exc:
            raise ConfigError(name, item, f"cannot be split into arguments: {exc}", "check the quoting") from None
    return items


def _resolution(name: str, value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) == {"x", "y"}:
        value = (value["x"], value["y"])
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and 320 <= v <= 8192 for v in value)
    ):
        raise ConfigError(name, value, "expected (width, height) in pixels, each 320..8192", "e.g. (1024, 768)")
    return tuple(value)


def _vlan_number(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 254:
        raise ConfigError(name, value, f"VLAN numbers are integers 1..254, got {value!r}")
    return value


def _vlans(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of VLAN numbers", "e.g. [1] or [1, 2]")
    for vlan in value:
        _vlan_number(name, vlan)
    if len(set(value)) != len(value):
        raise ConfigError(name, value, "a VLAN is listed twice")
    return tuple(value)


def _size_list(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of sizes in MiB", "e.g. [64, 128]")
    check = _int_range(1, 1 << 24, " MiB")
    return tuple(check(name, v) for v in value)


def _disk_image(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(name, value, "expected a path (str), or None for a root that does not persist")
    text = str(value)
    try:
        text.format(state_dir="x", name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(name, value, f"bad placeholder {exc}",
                          "the only placeholders are {state_dir} and {name}; write {{ }} for literal braces") from None
    return text


def _guest_abs_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        raise ConfigError(name, value, "expected an absolute guest path", "e.g. '/mnt/data'")
    return str(PurePosixPath(value))


def _port(name: str, value: Any) -> int:
    return _int_range(1, 65535)(name, value)


# -- records ----------------------------------------------------------------


def _record(cls: type, name: str, value: Any, aliases: Mapping[str, str] | None = None) -> Any:
    """Build ``cls`` from an instance or a dict (unknown keys are errors with a hint)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, f"expected a dict or vmtest.{cls.__name__}")
    values = {}
    names = [f.name for f in dataclasses.fields(cls)]
    for key, item in value.items():
        key = (aliases or {}).get(key, key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(names)
            raise ConfigError(f"{name}.{key}", item, "unknown key", hint)
        values[key] = item
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in values]
        raise ConfigError(name, dict(value), f"missing {', '.join(missing) or 'keys'}: {exc}") from None


@dataclass(frozen=True)
class ForwardPort:
    """One user-mode-network port forwarding (``virtualisation.forwardPorts`` entry).

    ``from_="host"``: connections to ``host_address:host_port`` on the host reach
    ``guest_port`` in the guest. ``from_="guest"``: connections from the guest to
    ``guest_address:guest_port`` (inside 10.0.2.0/24) reach ``host_address:host_port``.
    ``host_address`` defaults to 127.0.0.1 (the seed's empty address binds every
    host interface; loopback keeps forwarded guests off the host's networks).
    """

    host_port: int
    guest_port: int
    from_: str = "host"
    proto: str = "tcp"
    host_address: str = "127.0.0.1"
    guest_address: str = ""

    def __post_init__(self) -> None:
        where = f"virtualisation.forward_ports[{self.from_}:{self.host_port}]"
        _choice(("host", "guest"))(f"{where}.from_", self.from_)
        _choice(("tcp", "udp"))(f"{where}.proto", self.proto)
        _port(f"{where}.host_port", self.host_port)
        _port(f"{where}.guest_port", self.guest_port)
        for attr in ("host_address", "guest_address"):
            value = getattr(self, attr)
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{attr}", value, "expected an IPv4 address string")
            if value:
                try:
                    ipaddress.IPv4Address(value)
                except ValueError:
                    raise ConfigError(f"{where}.{attr}", value, "not an IPv4 address (QEMU forwards IPv4 only)") from None
        if self.from_ == "guest":
            # The seed's assertions on guest-to-host forwarding.
            if self.proto != "tcp":
                raise ConfigError(f"{where}.proto", self.proto, "guest-to-host forwarding supports only TCP connections",
                                  "use proto='tcp'")
            if not self.guest_address or ipaddress.IPv4Address(self.guest_address) not in USER_NET:
                raise ConfigError(f"{where}.guest_address", self.guest_address,
                                  "the address must be in the user-mode network (10.0.2.0/24)",
                                  "e.g. guest_address='10.0.2.100'")
            if not self.host_address:
                raise ConfigError(f"{where}.host_address", self.host_address, "guest forwarding needs a host address",
                                  "e.g. host_address='127.0.0.1'")

    @staticmethod
    def parse(name: str, value: Any) -> ForwardPort:
        if isinstance(value, Mapping):
            flat: dict[str, Any] = {}
            for key, item in value.items():
                if key in ("host", "guest") and isinstance(item, Mapping):  # the seed's nested form
                    for sub, subitem in item.items():
                        flat[f"{key}_{sub}"] = subitem
                else:
                    flat[key] = item
            value = flat
        return _record(ForwardPort, name, value, aliases={"from": "from_"})


@dataclass(frozen=True)
class SharedDirectory:
    """A host directory shared into the guest over 9p (``virtualisation.sharedDirectories.<tag>``)."""

    source: str
    target: str
    security_model: str = "none"

    def __post_init__(self) -> None:
        source = os.fspath(self.source) if isinstance(self.source, os.PathLike) else self.source
        if not isinstance(source, str) or not source:
            raise ConfigError("virtualisation.shared_directories.source", self.source, "expected a host path")
        if not os.path.isdir(source):
            raise ConfigError("virtualisation.shared_directories.source", source,
                              "does not exist or is not a directory on the host", "create it before declaring the share")
        object.__setattr__(self, "source", os.path.abspath(source))
        object.__setattr__(self, "target", _guest_abs_path("virtualisation.shared_directories.target", self.target))
        _choice(SECURITY_MODELS)("virtualisation.shared_directories.security_model", self.security_model)


@dataclass(frozen=True)
class FileSystem:
    """An extra guest mount (``virtualisation.fileSystems.<mount point>``), mounted at boot."""

    device: str
    fs_type: str = "auto"
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _string("virtualisation.file_systems.device", self.device)
        _string("virtualisation.file_systems.fs_type", self.fs_type)
        object.__setattr__(self, "options", _str_list("virtualisation.file_systems.options", self.options))


@dataclass(frozen=True)
class Interface:
    """A named NIC on a VLAN (``virtualisation.interfaces.<name>``)."""

    vlan: int
    assign_ip: bool = False

    def __post_init__(self) -> None:
        _vlan_number("virtualisation.interfaces.vlan", self.vlan)
        _bool("virtualisation.interfaces.assign_ip", self.assign_ip)


@dataclass(frozen=True)
class Drive:
    """An extra QEMU drive (``virtualisation.qemu.drives`` entry)."""

    file: str
    name: str | None = None
    drive_extra_opts: FrozenMap = field(default_factory=FrozenMap)
    device_extra_opts: FrozenMap = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", _string("virtualisation.qemu.drives.file", os.fspath(self.file)))
        _optional_string("virtualisation.qemu.drives.name", self.name)
        for attr in ("drive_extra_opts", "device_extra_opts"):
            value = getattr(self, attr)
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and "," not in v for k, v in value.items()
            ):
                raise ConfigError(f"virtualisation.qemu.drives.{attr}", value,
                                  "expected a dict of str -> str (values without commas)", "e.g. {'cache': 'none'}")
            object.__setattr__(self, attr, FrozenMap(value))


def _map_of(cls: type, key_check: Validator | None = None, parse: Callable[[str, Any], Any] | None = None) -> Validator:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, "expected a dict")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(name, key, "keys must be non-empty strings")
            if key_check is not None:
                key = key_check(f"{name} key", key)
            out[key] = (parse or (lambda n, v: _record(cls, n, v)))(f"{name}[{key!r}]", item)
        return FrozenMap(out)

    return check


def _tag(name: str, value: str) -> str:
    if not value.replace("-", "").replace("_", "").isalnum() or len(value) > 31:
        raise ConfigError(name, value, "a 9p mount tag is 1..31 letters, digits, '-' or '_'")
    if value in ("xchg", "shared"):
        raise ConfigError(name, value, "reserved for vmtest's own shares", "choose another tag")
    return value


def _ifname(name: str, value: str) -> str:
    if len(value) > 15 or not all(c.isalnum() or c in "-_." for c in value):
        raise ConfigError(name, value, "a Linux interface name is 1..15 letters, digits, '-', '_' or '.'")
    if value.startswith("eth") and value[3:].isdigit():
        raise ConfigError(name, value, "eth<N> names belong to the NICs of `vlans` and the user-mode NIC (eth0)",
                          "choose another name, e.g. 'lan0'")
    return value


def _forward_ports(name: str, value: Any) -> tuple[ForwardPort, ...]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of forwardings",
                          "e.g. [{'host_port': 8080, 'guest_port': 80}]")
    ports = tuple(ForwardPort.parse(f"{name}[{i}]", v) for i, v in enumerate(value))
    seen = set()
    for p in ports:
        if p.from_ == "host":
            key = (p.proto, p.host_address, p.host_port)
            if key in seen:
                raise ConfigError(name, p.host_port, f"host port {p.proto}:{p.host_address}:{p.host_port} is forwarded twice")
            seen.add(key)
    return ports


def _drives(name: str, value: Any) -> tuple[Drive, ...]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of drives", "e.g. [{'file': '/path/disk.qcow2'}]")
    drives = tuple(_record(Drive, f"{name}[{i}]", v) for i, v in enumerate(value))
    names = [d.name for d in drives if d.name is not None]
    for n in names:
        if names.count(n) > 1 or n in ("root",) or n.startswith("empty"):
            raise ConfigError(name, n, "drive names must be unique (and 'root', 'empty<N>' are vmtest's own)",
                              "rename one of the drives")
    return drives


def option(default: Any, doc: str, nixos: str, validate: Validator, proof: str = "", factory: bool = False) -> Any:
    """Declare one option: default, documentation, NixOS name, validator, the test that proves it."""
    meta = {"doc": doc, "nixos": nixos, "validate": validate, "proof": proof}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _validate_fields(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = f.metadata["validate"](f"{prefix}.{f.name}", getattr(obj, f.name))
        object.__setattr__(obj, f.name, value)


def _from_dict(cls: type, prefix: str, values: Mapping[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known options: " + ", ".join(names)
            raise ConfigError(f"{prefix}.{key}", values[key], "unknown option", hint)
    return cls(**values)


IT = "tests/integration/test_options.py"


@dataclass(frozen=True)
class QemuOptions:
    """``virtualisation.qemu.*``: how QEMU itself is run."""

    binary: str = option(DEFAULT_QEMU_BINARY, "QEMU system emulator to run (name on PATH or absolute path); "
                         "the analogue of the seed's package option.", "virtualisation.qemu.package", _string,
                         "tests/unit/test_qemu_argv.py::test_custom_qemu_binary_and_resolution")
    options: tuple[str, ...] = option((), "Extra QEMU arguments, each entry split like shell words "
                                      "(e.g. \"-vga std\"); appended after vmtest's own.",
                                      "virtualisation.qemu.options", _argv_list, f"{IT}::test_qemu_options_and_consoles")
    consoles: tuple[str, ...] | None = option(
        None, "Kernel console= devices, primary last. Default: tty0 then ttyS0,115200n8 when graphics is on, "
        "ttyS0 alone when off. The serial port stays primary even with graphics (the seed puts tty0 last) "
        "because the driver's log and failure reports read the serial console.",
        "virtualisation.qemu.consoles", _optional_str_list, f"{IT}::test_qemu_options_and_consoles")
    networking_options: tuple[str, ...] = option(
        (), "Extra networking arguments for QEMU (split like shell words), added after vmtest's NICs.",
        "virtualisation.qemu.networkingOptions", _argv_list, f"{IT}::test_networking_options")
    drives: tuple[Drive, ...] = option((), "Extra drives: file, drive_extra_opts, device_extra_opts, name (unique). "
                                       "The root disk and empty disks are added by vmtest.",
                                       "virtualisation.qemu.drives", _drives, f"{IT}::test_drives")
    disk_interface: str = option("virtio", "Bus of the disks: virtio (virtio-blk), scsi (virtio-scsi; the seed "
                                 "uses an emulated LSI controller, slower under TCG) or ide.",
                                 "virtualisation.qemu.diskInterface", _choice(DISK_INTERFACES),
                                 f"{IT}::test_disk_interface")
    guest_agent: bool = option(True, "Run qemu-guest-agent in the guest on its own virtio-serial port; "
                               "Machine.guest_agent(cmd) talks to it.", "virtualisation.qemu.guestAgent.enable",
                               _bool, f"{IT}::test_guest_agent_and_virtio_keyboard")
    virtio_keyboard: bool = option(True, "Add a virtio-keyboard device.", "virtualisation.qemu.virtioKeyboard",
                                   _bool, f"{IT}::test_guest_agent_and_virtio_keyboard")

    def __post_init__(self) -> None:
        _validate_fields(self, "virtualisation.qemu")


def _qemu(name: str, value: Any) -> QemuOptions:
    if isinstance(value, QemuOptions):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "expected a dict of qemu options or vmtest.options.QemuOptions")
    return _from_dict(QemuOptions, name, value)


@dataclass(frozen=True)
class Virtualisation:
    """QEMU-level options of a machine (``virtualisation.*`` in NixOS's qemu-vm.nix)."""

    memory_size: int = option(1024, "Guest memory in MiB (checked against the host's available memory at start).",
                              "virtualisation.memorySize", _int_range(128, 1 << 20, " MiB"), f"{IT}::test_sizes")
    cores: int = option(1, "Number of virtual CPUs.", "virtualisation.cores", _int_range(1, 256), f"{IT}::test_sizes")
    disk_size: int | None = option(
        None, "Size of the root disk in MiB; the root file system is grown to fill it at boot. Default: "
        "1024, or the image's file system when that is larger (the seed's 1024 fits because its root holds no "
        "packages; ours holds them all, so a fixed default would break as packages are added). An explicit "
        "size smaller than the image is an error.",
        "virtualisation.diskSize", _optional(_int_range(256, 1 << 24, " MiB")), f"{IT}::test_sizes")
    disk_image: str | None = option(
        DEFAULT_DISK_IMAGE,
        "Writable root disk: a qcow2 overlay on the cached image, created on first start. Placeholders "
        "{state_dir} and {name}. Kept across reboot() and, with --vm-keep-state, across runs. None: nothing "
        "persists, writes go to a tmpfs overlay and vanish on reboot.",
        "virtualisation.diskImage", _disk_image, f"{IT}::test_disk_image_persistence")
    empty_disk_images: tuple[int, ...] = option(
        (), "Extra writable disks, one per size in MiB (serial empty<N>), created in the state dir.",
        "virtualisation.emptyDiskImages", _size_list, f"{IT}::test_sizes")
    msize: int = option(16384, "9p maximum packet size in bytes for shared_directories.",
                        "virtualisation.msize", _int_range(4096, 1 << 20), f"{IT}::test_shared_directories")
    shared_directories: Mapping[str, SharedDirectory] = option(
        FrozenMap, "9p shares: tag -> {source (host dir, must exist), target (guest mount point), "
        "security_model (default none)}; version 9p2000.L, mounted at boot.",
        "virtualisation.sharedDirectories", _map_of(SharedDirectory, _tag), f"{IT}::test_shared_directories",
        factory=True)
    file_systems: Mapping[str, FileSystem] = option(
        FrozenMap, "Extra guest mounts: mount point -> {device, fs_type, options}, mounted at boot.",
        "virtualisation.fileSystems", _map_of(FileSystem, _guest_abs_path), f"{IT}::test_shared_directories",
        factory=True)
    root_device: str | None = option(
        None, "Guest device holding the root file system. Default: /dev/vda (virtio) or /dev/sda (scsi, ide).",
        "virtualisation.rootDevice", _optional_string, f"{IT}::test_disk_interface")
    use_default_filesystems: bool = option(
        True, "Attach the image as the root disk. False: no root disk is attached; give the root in "
        "qemu.drives and root_device.", "virtualisation.useDefaultFilesystems", _bool,
        f"{IT}::test_drives")
    use_host_certs: bool = option(False, "Copy the host's CA bundle (/etc/ssl/certs/ca-certificates.crt) into "
                                  "the guest at boot.", "virtualisation.useHostCerts", _bool,
                                  f"{IT}::test_shared_directories")
    forward_ports: tuple[ForwardPort, ...] = option(
        (), "User-mode network forwardings: {from_ host|guest, proto tcp|udp, host_address (127.0.0.1), "
        "host_port, guest_address, guest_port}. Any entry adds a user-mode NIC eth0 (10.0.2.15).",
        "virtualisation.forwardPorts", _forward_ports, f"{IT}::test_forwarding")
    restrict_network: bool = option(
        True, "Isolate the user-mode NIC (restrict=on): only the forwardings work. Default True (the seed's is "
        "False): a test guest must not reach real networks; False warns.",
        "virtualisation.restrictNetwork", _bool, f"{IT}::test_forwarding")
    vlans: tuple[int, ...] = option(
        None, "VLANs the machine is on; NIC eth<i> is on the i-th VLAN listed, address 192.168.<vlan>.<node>. "
        "Default [1] unless interfaces are given, then [].", "virtualisation.vlans", _vlans,
        "examples/test_router.py::test_router")
    interfaces: Mapping[str, Interface] = option(
        FrozenMap, "Named NICs: name -> {vlan, assign_ip (False)}; assign_ip gives the vlans addressing.",
        "virtualisation.interfaces", _map_of(Interface, _ifname), "tests/integration/test_interfaces.py::test_named_interfaces",
        factory=True)
    graphics: bool = option(
        True, "Give the machine a virtual display (no window opens on the host); "
        "False removes it and makes the serial port the only console.", "virtualisation.graphics", _bool,
        "tests/integration/test_boot.py::test_machine_without_graphics_boots")
    resolution: tuple[int, int] = option(
        (1024, 768), "Display resolution (width, height) in pixels.", "virtualisation.resolution", _resolution,
        "tests/unit/test_qemu_argv.py::test_custom_qemu_binary_and_resolution")
    direct_boot: bool | None = option(
        None, "Boot the kernel directly (QEMU -kernel). Default: not use_boot_loader. Booting without it "
        "needs a boot loader (separate issue).", "virtualisation.directBoot.enable", _optional_bool,
        "tests/unit/test_option_validation.py::test_seed_changed_initrd_without_direct_boot")
    direct_boot_initrd: str | None = option(
        None, "Initrd for direct boot (default: vmtest's stage 1).", "virtualisation.directBoot.initrd",
        _optional_string, "tests/unit/test_qemu_argv.py::test_direct_boot_initrd")
    use_boot_loader: bool = option(
        False, "Boot through a boot loader installed in the image (boot-path issue; not implemented: True "
        "together with direct boot warns as the seed does and boots directly).",
        "virtualisation.useBootLoader", _bool, "tests/unit/test_option_validation.py::test_seed_warning_direct_boot_with_boot_loader")
    qemu: QemuOptions = option(QemuOptions, "How QEMU is run (see the qemu.* rows).", "virtualisation.qemu",
                               _qemu, "", factory=True)

    def __post_init__(self) -> None:
        _validate_fields(self, "virtualisation")
        if self.vlans is None:
            object.__setattr__(self, "vlans", () if self.interfaces else (1,))
        if self.direct_boot is None:
            object.__setattr__(self, "direct_boot", not self.use_boot_loader)
        if not self.direct_boot and self.direct_boot_initrd is not None:
            raise ConfigError("virtualisation.direct_boot_initrd", self.direct_boot_initrd,
                              "a changed direct-boot initrd is not used when direct_boot is off",
                              "remove direct_boot_initrd or set direct_boot=True")
        if not self.direct_boot:
            raise ConfigError("virtualisation.direct_boot", False,
                              "booting through a boot loader is not implemented yet (only direct boot)",
                              "remove use_boot_loader / direct_boot=False")
        if self.use_boot_loader:
            warnings.warn(
                "virtualisation: direct_boot and use_boot_loader are both enabled; QEMU boots the kernel "
                "directly and never runs the boot loader, so use_boot_loader has no effect. Disable one of them.",
                UserWarning, stacklevel=4)
        if self.forward_ports and not self.restrict_network:
            warnings.warn(
                "virtualisation.restrict_network=False: the guest's user-mode NIC can reach the host and, through "
                "it, real networks.", UserWarning, stacklevel=4)
        vlan_of = {f"eth{i}": v for i, v in enumerate(self.vlans, start=1)}
        for ifname, iface in self.interfaces.items():
            vlan_of[ifname] = iface.vlan
        if len(set(vlan_of.values())) != len(vlan_of):
            raise ConfigError("virtualisation.interfaces", dict(self.interfaces),
                              "two NICs on the same VLAN (vlans + interfaces)", "connect each VLAN once")
        disks = int(self.use_default_filesystems) + len(self.empty_disk_images) + len(self.qemu.drives)
        if self.qemu.disk_interface == "ide" and disks > 4:
            raise ConfigError("virtualisation.qemu.disk_interface", "ide",
                              f"{disks} disks do not fit the 4 IDE slots (root + empty_disk_images + drives)",
                              "use disk_interface='virtio' or 'scsi'")
        if self.direct_boot_initrd is not None and not os.path.isfile(self.direct_boot_initrd):
            raise ConfigError("virtualisation.direct_boot_initrd", self.direct_boot_initrd, "no such file on the host")

    @property
    def user_network(self) -> bool:
        """True when the machine gets a user-mode (SLiRP) NIC: only for forwarded ports."""
        return bool(self.forward_ports)

    def root_disk_mib(self, image_mib: int) -> int:
        """The root disk's size for an image whose file system is ``image_mib`` MiB."""
        return self.disk_size if self.disk_size is not None else max(1024, image_mib)

    @property
    def primary_root_device(self) -> str:
        if self.root_device is not None:
            return self.root_device
        return "/dev/vda" if self.qemu.disk_interface == "virtio" else "/dev/sda"

    def image_packages(self) -> tuple[str, ...]:
        """Debian packages these options need inside the guest image."""
        pkgs = []
        if self.qemu.guest_agent:
            pkgs.append("qemu-guest-agent")
        if self.disk_size is not None and self.disk_size > 1024:
            pkgs.append("e2fsprogs")
        return tuple(pkgs)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Virtualisation:
        return _from_dict(cls, "virtualisation", values)


# Seed options that are not fields above, with their status and why.
NOT_DECLARED: dict[str, tuple[str, str]] = {
    "virtualisation.additionalPaths": ("analogue", "MachineConfig.packages/files: the image store puts them in the image."),
    "virtualisation.useNixStoreImage": ("analogue", "every image is a cached disk image (the image store); nothing is shared from the host."),
    "virtualisation.mountHostNixStore": ("not applicable", "Debian guests have no Nix store; packages are in the image."),
    "virtualisation.writableStore": ("analogue", "the root is always writable: a qcow2 overlay (disk_image) or tmpfs (disk_image=None)."),
    "virtualisation.writableStoreUseTmpfs": ("analogue", "disk_image=None puts all writes in a tmpfs overlay."),
    "virtualisation.host.pkgs": ("not applicable", "host tools come from the host's Debian packages (./run installs them)."),
    "virtualisation.bootLoaderDevice": ("planned", "boot-path issue (boot loader)."),
    "virtualisation.bootPartition": ("planned", "boot-path issue (boot loader)."),
    "virtualisation.installBootLoader": ("planned", "boot-path issue (boot loader)."),
    "virtualisation.useBIOSBoot": ("planned", "boot-path issue (boot loader)."),
    "virtualisation.useEFIBoot": ("planned", "boot-path issue (EFI)."),
    "virtualisation.useSecureBoot": ("planned", "boot-path issue (secure boot)."),
    "virtualisation.efi.OVMF": ("planned", "boot-path issue (EFI)."),
    "virtualisation.efi.firmware": ("planned", "boot-path issue (EFI)."),
    "virtualisation.efi.variables": ("planned", "boot-path issue (EFI)."),
    "virtualisation.efi.keepVariables": ("planned", "boot-path issue (EFI)."),
    "virtualisation.bios": ("planned", "boot-path issue (alternate BIOS)."),
    "virtualisation.tpm.enable": ("planned", "boot-path issue (TPM goes with secure boot)."),
    "virtualisation.tpm.package": ("planned", "boot-path issue."),
    "virtualisation.tpm.deviceModel": ("planned", "boot-path issue."),
    "virtualisation.tpm.provisioning": ("planned", "boot-path issue."),
}


def _rows(cls: type, prefix: str) -> list[dict[str, str]]:
    rows = []
    for f in dataclasses.fields(cls):
        if f.name == "qemu" and cls is Virtualisation:
            rows += _rows(QemuOptions, "qemu.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if f.name == "vlans":
            default_text = "[1] if no interfaces else []"
        elif isinstance(default, FrozenMap):
            default_text = "{}"
        elif isinstance(default, tuple):
            default_text = repr(list(default))
        else:
            default_text = repr(default)
        rows.append({
            "name": prefix + f.name,
            "nixos": f.metadata["nixos"],
            "type": str(f.type),
            "default": default_text,
            "doc": f.metadata["doc"],
            "proof": f.metadata["proof"],
        })
    return rows


def reference() -> list[dict[str, str]]:
    """One row per declared option, for the generated documentation."""
    return _rows(Virtualisation, "")


def markdown() -> str:
    """``docs/options.md``: every seed option, ours or why not (generated; a unit test keeps it current)."""
    lines = [
        "# Options: parity with NixOS `qemu-vm.nix`",
        "",
        "Generated by `vmtest options --markdown` from `vmtest/options.py` (the single declaration of the",
        "options); `tests/unit/test_options_doc.py` fails when this file is out of date. Set them in",
        "`MachineConfig(virtualisation={...})`; `qemu.*` options go in a nested dict",
        "(`virtualisation={\"qemu\": {\"disk_interface\": \"scsi\"}}`).",
        "",
        "| seed option | ours | type | default | status | proof | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in reference():
        if row["nixos"] == "virtualisation.qemu":
            continue
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines.append(
            f"| `{row['nixos']}` | `{row['name']}` | `{cell(row['type'])}` | `{cell(row['default'])}` | supported | "
            f"`{row['proof']}` | {cell(row['doc'])} |"
        )
    for nixos, (status, why) in NOT_DECLARED.items():
        lines.append(f"| `{nixos}` | - | - | - | {status} | - | {why} |")
    return "\n".join(lines) + "\n"
