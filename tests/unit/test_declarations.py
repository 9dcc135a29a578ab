"""The declaration mechanism: every field of the declared dataclasses carries its doc (its docstring) and
validator."""

from __future__ import annotations

import dataclasses

import pytest

from vmtest.config.declare import (
    FrozenMap,
    declaration,
    declared,
    documented,
    from_dict,
    option,
    record,
    validate_fields,
)
from vmtest.config.machine import MachineConfig
from vmtest.config.validators import int_range
from vmtest.config.virtualisation import QemuOptions, Virtualisation
from vmtest.core.errors import ConfigError


@pytest.mark.parametrize("cls", [MachineConfig, Virtualisation, QemuOptions])
def test_every_field_is_declared_with_doc_and_validator(cls: type) -> None:
    fields = dataclasses.fields(cls)
    assert [f.name for f, _ in declared(cls)] == [f.name for f in fields]
    for f in fields:
        decl = declaration(f)
        assert decl.doc.strip(), f"{cls.__name__}.{f.name} has no doc"
        assert callable(decl.validate), f"{cls.__name__}.{f.name} has no validator"


def test_machine_config_fields_validate_through_their_declarations() -> None:
    for f, decl in declared(MachineConfig):
        value = getattr(MachineConfig(), f.name)
        assert decl.validate(f.name, value) == value  # the normal form is a fixed point


def test_docstrings_list_the_declared_fields() -> None:
    for f, decl in declared(MachineConfig):
        assert f"``{f.name}``: {decl.doc}" in MachineConfig.__doc__


@documented
@dataclasses.dataclass(frozen=True)
class Point:
    x: int = option(0, int_range(0, 10))
    """The x
    coordinate."""
    y: int = option(0, int_range(0, 10))
    """Y."""

    def __post_init__(self) -> None:
        validate_fields(self, "point")


def test_a_declared_dataclass_validates_and_builds_from_a_dict() -> None:
    assert from_dict(Point, "point", {"x": 3}) == Point(3, 0)
    with pytest.raises(ConfigError) as info:
        Point(x=11)
    assert info.value.field == "point.x" and "out of range 0..10" in info.value.why
    with pytest.raises(ConfigError) as info:
        from_dict(Point, "point", {"z": 1})
    assert info.value.field == "point.z" and info.value.why == "unknown option"
    assert info.value.fix == "known options: x, y"
    with pytest.raises(ConfigError) as info:
        record(Point, "p", {"xx": 1})
    assert info.value.field == "p.xx" and info.value.fix == "did you mean 'x'?"


def test_an_options_documentation_is_its_docstring_on_one_line() -> None:
    assert [decl.doc for _, decl in declared(Point)] == ["The x coordinate.", "Y."]
    assert "- ``x``: The x coordinate." in (Point.__doc__ or "")


def test_an_option_without_a_docstring_is_an_error_at_import() -> None:
    with pytest.raises(TypeError, match=r"Bare.y: an option needs a docstring"):

        @documented
        @dataclasses.dataclass(frozen=True)
        class Bare:
            x: int = option(0, int_range(0, 10))
            """X."""
            y: int = option(0, int_range(0, 10))


def test_frozen_map_is_immutable_hashable_and_sorted() -> None:
    m = FrozenMap({"b": 1, "a": 2})
    assert list(m) == ["a", "b"] and m == {"a": 2, "b": 1} and hash(m) == hash(FrozenMap({"a": 2, "b": 1}))
    with pytest.raises(TypeError):
        m["c"] = 3  # type: ignore[index]


def test_missing_keys_of_a_record_are_only_the_required_ones() -> None:
    from vmtest.config.records import Drive

    with pytest.raises(ConfigError) as info:
        record(Drive, "virtualisation.qemu.drives[0]", {"name": "data"})
    assert info.value.why.startswith("missing file: ")  # not the fields with a default factory
