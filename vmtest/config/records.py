"""The records inside the ``virtualisation`` options: one forwarding, share, mount, NIC or drive.

Each record checks itself in ``__post_init__`` (its checks span several
fields, like the seed's assertions on guest forwarding); the validators at the
end build the option values (tuples and :class:`FrozenMap` of records) from
what a test writes: records or dicts, with "unknown key, did you mean" errors.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmtest.config.declare import FrozenMap, Validator, record
from vmtest.config.validators import (
    boolean,
    choice,
    guest_abs_path,
    optional_string,
    port,
    str_list,
    string,
    vlan_number,
)
from vmtest.core import contract
from vmtest.core.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SECURITY_MODELS = ("none", "passthrough", "mapped-xattr", "mapped-file")
USER_NET = ipaddress.ip_network(contract.USER_NET)


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
        choice(("host", "guest"))(f"{where}.from_", self.from_)
        choice(("tcp", "udp"))(f"{where}.proto", self.proto)
        port(f"{where}.host_port", self.host_port)
        port(f"{where}.guest_port", self.guest_port)
        for attr in ("host_address", "guest_address"):
            value = getattr(self, attr)
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{attr}", value, "expected an IPv4 address string")
            if value:
                try:
                    ipaddress.IPv4Address(value)
                except ValueError:
                    raise ConfigError(
                        f"{where}.{attr}", value, "not an IPv4 address (QEMU forwards IPv4 only)"
                    ) from None
        if self.from_ == "guest":
            # The seed's assertions on guest-to-host forwarding.
            if self.proto != "tcp":
                raise ConfigError(
                    f"{where}.proto",
                    self.proto,
                    "guest-to-host forwarding supports only TCP connections",
                    "use proto='tcp'",
                )
            if not self.guest_address or ipaddress.IPv4Address(self.guest_address) not in USER_NET:
                raise ConfigError(
                    f"{where}.guest_address",
                    self.guest_address,
                    f"the address must be in the user-mode network ({contract.USER_NET})",
                    "e.g. guest_address='10.0.2.100'",
                )
            if not self.host_address:
                raise ConfigError(
                    f"{where}.host_address",
                    self.host_address,
                    "guest forwarding needs a host address",
                    "e.g. host_address='127.0.0.1'",
                )

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
        return record(ForwardPort, name, value, aliases={"from": "from_"})


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
            raise ConfigError(
                "virtualisation.shared_directories.source",
                source,
                "does not exist or is not a directory on the host",
                "create it before declaring the share",
            )
        object.__setattr__(self, "source", os.path.abspath(source))
        object.__setattr__(self, "target", guest_abs_path("virtualisation.shared_directories.target", self.target))
        choice(SECURITY_MODELS)("virtualisation.shared_directories.security_model", self.security_model)


@dataclass(frozen=True)
class FileSystem:
    """An extra guest mount (``virtualisation.fileSystems.<mount point>``), mounted at boot."""

    device: str
    fs_type: str = "auto"
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        string("virtualisation.file_systems.device", self.device)
        string("virtualisation.file_systems.fs_type", self.fs_type)
        object.__setattr__(self, "options", str_list("virtualisation.file_systems.options", self.options))


@dataclass(frozen=True)
class Interface:
    """A named NIC on a VLAN (``virtualisation.interfaces.<name>``)."""

    vlan: int
    assign_ip: bool = False

    def __post_init__(self) -> None:
        vlan_number("virtualisation.interfaces.vlan", self.vlan)
        boolean("virtualisation.interfaces.assign_ip", self.assign_ip)


@dataclass(frozen=True)
class Drive:
    """An extra QEMU drive (``virtualisation.qemu.drives`` entry)."""

    file: str
    name: str | None = None
    drive_extra_opts: FrozenMap = field(default_factory=FrozenMap)
    device_extra_opts: FrozenMap = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", string("virtualisation.qemu.drives.file", os.fspath(self.file)))
        optional_string("virtualisation.qemu.drives.name", self.name)
        for attr in ("drive_extra_opts", "device_extra_opts"):
            value = getattr(self, attr)
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and "," not in v for k, v in value.items()
            ):
                raise ConfigError(
                    f"virtualisation.qemu.drives.{attr}",
                    value,
                    "expected a dict of str -> str (values without commas)",
                    "e.g. {'cache': 'none'}",
                )
            object.__setattr__(self, attr, FrozenMap(value))


def map_of(cls: type[DataclassInstance], key_check: Validator | None = None) -> Validator:
    """A dict of records ``cls`` (given as records or dicts), keys checked by ``key_check``."""

    def check(name: str, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, "expected a dict")
        out: dict[str, DataclassInstance] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(name, key, "keys must be non-empty strings")
            if key_check is not None:
                key = key_check(f"{name} key", key)
            out[key] = record(cls, f"{name}[{key!r}]", item)
        return FrozenMap(out)

    return check


def forwarding_list(name: str, value: Any) -> tuple[ForwardPort, ...]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of forwardings", "e.g. [{'host_port': 8080, 'guest_port': 80}]")
    ports = tuple(ForwardPort.parse(f"{name}[{i}]", v) for i, v in enumerate(value))
    seen = set()
    for p in ports:
        if p.from_ == "host":
            key = (p.proto, p.host_address, p.host_port)
            if key in seen:
                raise ConfigError(
                    name, p.host_port, f"host port {p.proto}:{p.host_address}:{p.host_port} is forwarded twice"
                )
            seen.add(key)
    return ports


def drive_list(name: str, value: Any) -> tuple[Drive, ...]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of drives", "e.g. [{'file': '/path/disk.qcow2'}]")
    found = tuple(record(Drive, f"{name}[{i}]", v) for i, v in enumerate(value))
    names = [d.name for d in found if d.name is not None]
    for n in names:
        if names.count(n) > 1 or n in ("root",) or n.startswith("empty"):
            raise ConfigError(
                name,
                n,
                "drive names must be unique (and 'root', 'empty<N>' are vmtest's own)",
                "rename one of the drives",
            )
    return found
