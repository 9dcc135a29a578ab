"""``options_of``: a record's NixOS names and proofs derived from its prefix, and its validation order (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vmtest import ConfigError
from vmtest.config.declare import camel_case, declared, option, options_of
from vmtest.config.validators import boolean, int_range


@dataclass(frozen=True)
@options_of("virtualisation.toy", "tests/integration/test_toy.py", nixos=True)
class Toy:
    memory_size: int = option(1024, int_range(1, 1 << 20), proof="test_sizes")
    use_efi_boot: bool = option(False, boolean, nixos="virtualisation.useEFIBoot", proof="a.py::test_b")

    def __post_init__(self) -> None:
        if self.use_efi_boot and self.memory_size < 256:
            raise ConfigError("virtualisation.toy.memory_size", self.memory_size, "too small for UEFI")


def test_names_are_derived_unless_written_out() -> None:
    assert camel_case("use_efi_boot") == "useEfiBoot" and camel_case("cores") == "cores"
    decls = {f.name: d for f, d in declared(Toy)}
    assert decls["memory_size"].nixos == "virtualisation.toy.memorySize"
    assert decls["memory_size"].proof == "tests/integration/test_toy.py::test_sizes"
    assert decls["use_efi_boot"].nixos == "virtualisation.useEFIBoot"
    assert decls["use_efi_boot"].proof == "a.py::test_b"  # a full PATH::TEST stays as it is


def test_fields_are_validated_first_then_the_records_own_checks() -> None:
    with pytest.raises(ConfigError, match=r"virtualisation\.toy\.memory_size.*expected"):
        Toy(memory_size="lots")  # type: ignore[arg-type]  # the validator's error, not a TypeError in the check
    with pytest.raises(ConfigError, match="too small for UEFI"):
        Toy(memory_size=128, use_efi_boot=True)
    assert Toy(memory_size=128).memory_size == 128
