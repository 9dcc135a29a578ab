"""The ``virtualisation.*`` options, each declared exactly once.

Every option is a field of :class:`Virtualisation` whose metadata carries its
NixOS name, documentation and validator. Validation, ``Virtualisation.from_dict``
and the generated option reference (``vmtest options``) all derive from these
declarations; the effect of each option on QEMU's argv lives in
:mod:`vmtest.qemu`, pinned by unit tests.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

Validator = Callable[[str, Any], Any]


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


def _resolution(name: str, value: Any) -> Any:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and 320 <= v <= 8192 for v in value)
    ):
        raise ConfigError(name, value, "expected (width, height) in pixels, each 320..8192", "e.g. (1024, 768)")
    return tuple(value)


def _vlans(name: str, value: Any) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of VLAN numbers", "e.g. [1] or [1, 2]")
    for vlan in value:
        if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 254:
            raise ConfigError(name, value, f"VLAN numbers are integers 1..254, got {vlan!r}")
    if len(set(value)) != len(value):
        raise ConfigError(name, value, "a VLAN is listed twice")
    return tuple(value)


def option(default: Any, doc: str, nixos: str, validate: Validator) -> Any:
    """Declare one option: default, documentation, NixOS name, validator."""
    return field(default=default, metadata={"doc": doc, "nixos": nixos, "validate": validate})


@dataclass(frozen=True)
class Virtualisation:
    """QEMU-level options of a machine (``virtualisation.*`` in NixOS's qemu-vm.nix)."""

    memory_size: int = option(
        1024, "Guest memory in MiB.", "virtualisation.memorySize", _int_range(128, 1 << 20, " MiB")
    )
    cores: int = option(1, "Number of virtual CPUs.", "virtualisation.cores", _int_range(1, 256))
    graphics: bool = option(
        True,
        "Give the machine a virtual display (no window opens on the host); "
        "False removes it and makes the serial port the primary console.",
        "virtualisation.graphics",
        _bool,
    )
    resolution: tuple[int, int] = option(
        (1024, 768), "Display resolution (width, height) in pixels.", "virtualisation.resolution", _resolution
    )

    vlans: tuple[int, ...] = option(
        (1,),
        "VLANs the machine is connected to (when it runs in a vmtest network); "
        "NIC eth<i> is on the i-th VLAN listed, address 192.168.<vlan>.<node number>.",
        "virtualisation.vlans",
        _vlans,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = f.metadata["validate"](f"virtualisation.{f.name}", getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Virtualisation:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known options: " + ", ".join(names)
                raise ConfigError(f"virtualisation.{key}", values[key], "unknown option", hint)
        return cls(**values)


def reference() -> list[dict[str, str]]:
    """One row per option, for the generated documentation."""
    return [
        {
            "name": f.name,
            "nixos": f.metadata["nixos"],
            "type": str(f.type),
            "default": repr(f.default),
            "doc": f.metadata["doc"],
        }
        for f in dataclasses.fields(Virtualisation)
    ]
