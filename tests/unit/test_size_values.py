"""Sizes as people write them (``--vm-cache-max-size``, ``vmtest cache gc --max-size``)."""

from __future__ import annotations

import pytest

from vmtest.config.validators import byte_size
from vmtest.core.errors import ConfigError
from vmtest.core.log import size_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20G", 20 << 30),
        ("20GiB", 20 << 30),
        ("20 gb", 20 << 30),
        ("512M", 512 << 20),
        ("1.5T", int(1.5 * (1 << 40))),
        ("4096", 4096),
        (4096, 4096),
        ("0", 0),
        ("none", 0),
        ("Unlimited", 0),
    ],
)
def test_sizes(text: object, expected: int) -> None:
    assert byte_size("cache_max_size", text) == expected


@pytest.mark.parametrize("bad", ["20X", "G", "-1G", -1, True, "twenty", None])
def test_a_bad_size_names_the_setting_the_value_and_an_example(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        byte_size("cache_max_size", bad)
    text = str(info.value)
    assert text.startswith(f"cache_max_size={bad!r}: ") and "e.g. 20G" in text


def test_size_text() -> None:
    assert [size_text(n) for n in (512, 3 << 20, 20 << 30, 5 << 40)] == ["512 B", "3.0 MiB", "20.0 GiB", "5120.0 GiB"]
