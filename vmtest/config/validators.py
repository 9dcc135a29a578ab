"""The validators of declared options.

A validator is ``check(name, value) -> value``: it returns the value in its
normal form (a tuple for a list, an absolute path, ...) or raises
:class:`~vmtest.core.errors.ConfigError` naming ``name``, the value, why it is
wrong and how to fix it. Factories (``int_range``, ``choice``, ``optional``)
return validators.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from vmtest.core.contract import RESERVED_TAGS
from vmtest.core.errors import ConfigError

Validator = Callable[[str, Any], Any]

# -- generic ---------------------------------------------------------------------------------------


def int_range(lo: int, hi: int, unit: str = "") -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, value, f"expected an integer{unit}, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise ConfigError(name, value, f"out of range {lo}..{hi}{unit}")
        return value

    return check


def boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigError(name, value, f"expected True or False, got {type(value).__name__}")
    return value


def optional(check: Validator) -> Validator:
    """``check``, or None."""
    return lambda name, value: None if value is None else check(name, value)


def optional_bool(name: str, value: Any) -> Any:
    return None if value is None else boolean(name, value)


def string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "expected a non-empty string")
    return value


def optional_string(name: str, value: Any) -> Any:
    return None if value is None else string(name, value)


def choice(choices: tuple[str, ...]) -> Validator:
    """One of ``choices`` (the validator keeps them as ``.choices`` for flags and docs)."""

    def check(name: str, value: Any) -> Any:
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            raise ConfigError(
                name,
                value,
                "must be one of " + ", ".join(map(repr, choices)),
                f"did you mean {close[0]!r}?" if close else "",
            )
        return value

    check.choices = choices  # type: ignore[attr-defined]  # a function attribute, read by Declaration.choices
    return check


def str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(
            name, value, "expected a list of strings", f"write [{value!r}]" if isinstance(value, str) else ""
        )
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, value, f"every entry must be a string, {item!r} is a {type(item).__name__}")
    return tuple(value)


def optional_str_list(name: str, value: Any) -> Any:
    return None if value is None else str_list(name, value)


def keyword_str_list(name: str, value: Any) -> tuple[str, ...]:
    """Like :func:`str_list` for a keyword argument: the fix for a single string names the keyword."""
    if isinstance(value, str):
        raise ConfigError(name, value, "expected a list of strings, got a single string", f"write {name}=[{value!r}]")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, f"expected a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, value, f"every entry must be a string, {item!r} is a {type(item).__name__}")
    return tuple(value)


def mapping(name: str, value: Any) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, f"expected a dict, got {type(value).__name__}")
    return value


# -- Debian and systemd names (MachineConfig) ------------------------------------------------------

_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?([=/][A-Za-z0-9.+~:\-]+)?$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9\-]*$")
_UNIT_RE = re.compile(
    r"^[A-Za-z0-9:_.\\@\-]+\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$"
)


def suite_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SUITE_RE.match(value):
        raise ConfigError(name, value, "not a Debian suite name", "use e.g. 'bookworm' or 'trixie'")
    return value


def package_list(name: str, value: Any) -> tuple[str, ...]:
    """Debian package names (optionally =version or /suite), sorted and without duplicates."""
    packages = keyword_str_list(name, value)
    for pkg in packages:
        if not _PACKAGE_RE.match(pkg):
            raise ConfigError(
                name,
                pkg,
                "not a valid Debian package name",
                "names are lower case letters, digits and + - . (optionally =version or /suite)",
            )
    return tuple(sorted(set(packages)))


def unit_name(name: str, value: Any) -> str:
    """A systemd unit name; one without a suffix is a ``.service``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "unit names must be non-empty strings", 'e.g. "nginx.service"')
    full = value if "." in value else value + ".service"
    if not _UNIT_RE.match(full):
        raise ConfigError(
            name,
            value,
            "not a valid systemd unit name",
            "use a name like 'foo.service', 'foo.socket' or 'foo.timer'",
        )
    return full


def unit_list(name: str, value: Any) -> tuple[str, ...]:
    return tuple(unit_name(name, unit) for unit in keyword_str_list(name, value))


def guest_file_path(name: str, path: Any) -> str:
    """An absolute guest path naming a file (not ``/``, no ``..``), normalised."""
    if not isinstance(path, str):
        raise ConfigError(name, path, "guest paths must be strings")
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise ConfigError(
            name, path, "guest paths must be absolute", f"write '/{path[2:] if path.startswith('./') else path}'"
        )
    if ".." in p.parts or str(p) == "/":
        raise ConfigError(name, path, "a guest path must name a file and must not contain '..'")
    return str(p)


# -- QEMU-level (virtualisation) -------------------------------------------------------------------


def argv_list(name: str, value: Any) -> tuple[str, ...]:
    """Extra QEMU arguments: each entry is split like a shell word list (``"-vga std"``)."""
    items = str_list(name, value)
    for item in items:
        try:
            shlex.split(item)
        except ValueError as exc:
            raise ConfigError(name, item, f"cannot be split into arguments: {exc}", "check the quoting") from None
    return items


def display_resolution(name: str, value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) == {"x", "y"}:
        value = (value["x"], value["y"])
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and 320 <= v <= 8192 for v in value)
    ):
        raise ConfigError(name, value, "expected (width, height) in pixels, each 320..8192", "e.g. (1024, 768)")
    return tuple(value)


def vlan_number(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 254:
        raise ConfigError(name, value, f"VLAN numbers are integers 1..254, got {value!r}")
    return value


def vlan_list(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of VLAN numbers", "e.g. [1] or [1, 2]")
    for vlan in value:
        vlan_number(name, vlan)
    if len(set(value)) != len(value):
        raise ConfigError(name, value, "a VLAN is listed twice")
    return tuple(value)


def size_list(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, "expected a list of sizes in MiB", "e.g. [64, 128]")
    check = int_range(1, 1 << 24, " MiB")
    return tuple(check(name, v) for v in value)


def disk_image_path(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(name, value, "expected a path (str), or None for a root that does not persist")
    text = str(value)
    try:
        text.format(state_dir="x", name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            name,
            value,
            f"bad placeholder {exc}",
            "the only placeholders are {state_dir} and {name}; write {{ }} for literal braces",
        ) from None
    return text


def guest_abs_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        raise ConfigError(name, value, "expected an absolute guest path", "e.g. '/mnt/data'")
    return str(PurePosixPath(value))


def port(name: str, value: Any) -> int:
    return int_range(1, 65535)(name, value)


def tag(name: str, value: str) -> str:
    """A 9p mount tag of a shared directory."""
    if not value.replace("-", "").replace("_", "").isalnum() or len(value) > 31:
        raise ConfigError(name, value, "a 9p mount tag is 1..31 letters, digits, '-' or '_'")
    if value in RESERVED_TAGS:
        raise ConfigError(name, value, "reserved for vmtest's own shares", "choose another tag")
    return value


def ifname(name: str, value: str) -> str:
    """The name of a named NIC."""
    if len(value) > 15 or not all(c.isalnum() or c in "-_." for c in value):
        raise ConfigError(name, value, "a Linux interface name is 1..15 letters, digits, '-', '_' or '.'")
    if value.startswith("eth") and value[3:].isdigit():
        raise ConfigError(
            name,
            value,
            "eth<N> names belong to the NICs of `vlans` and the user-mode NIC (eth0)",
            "choose another name, e.g. 'lan0'",
        )
    return value


# -- run settings (values that may come as text from the environment or an ini file) --------------

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def yes_no(name: str, value: Any) -> bool:
    """A yes/no setting: a bool, or one of the words of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ConfigError(name, value, "expected yes or no", "use one of " + ", ".join(TRUE_WORDS + FALSE_WORDS))


def seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds (a number or its text)."""
    if isinstance(value, bool):
        raise ConfigError(name, value, "not a number of seconds", "e.g. 3600")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "not a number of seconds", "e.g. 3600") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(name, value, "must be a positive number of seconds", "e.g. 3600")
    return number


def base_url(name: str, value: Any) -> str:
    """An http:// or https:// URL with a host (kept without its trailing slash)."""
    from urllib.parse import urlsplit

    text = value.strip() if isinstance(value, str) else value
    parts = urlsplit(text) if isinstance(text, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            name, value, "expected an http:// or https:// base URL", "e.g. https://cache.example.org/vmtest"
        )
    return str(text).rstrip("/")


_BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
UNBOUNDED_WORDS = ("0", "none", "off", "unlimited")


def byte_size(name: str, value: Any) -> int:
    """A size in bytes: a whole number, or a number with a binary unit (``512M``, ``20G``, ``1.5T``,
    ``20GiB``); ``0``, ``none``, ``off`` or ``unlimited`` is 0 (no bound)."""
    hint = "e.g. 20G, 512M or 0 for no bound"
    if isinstance(value, bool):
        raise ConfigError(name, value, "not a size", hint)
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(name, value, "a size cannot be negative", hint)
        return value
    text = value.strip() if isinstance(value, str) else None
    if text is None:
        raise ConfigError(name, value, "not a size", hint)
    if text.lower() in UNBOUNDED_WORDS:
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    if m is None:
        raise ConfigError(name, value, "not a size", hint)
    return int(float(m.group(1)) * _BYTE_UNITS[m.group(2).upper()])


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(name: str, value: Any) -> float:
    """A positive number of seconds, or a number with a unit: ``90``, ``90s``, ``30m``, ``2h``."""
    text = str(value).strip() if isinstance(value, str) else value
    if isinstance(text, str) and text[-1:] in _UNITS:
        try:
            number = float(text[:-1]) * _UNITS[text[-1]]
        except ValueError:
            raise ConfigError(name, value, "not a duration", "e.g. 30m, 90s or 1800") from None
        return seconds(name, number)
    return seconds(name, text)


def host_path(name: str, value: Any) -> Path:
    """A host path (``~`` expanded), made absolute against the current directory."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigError(name, value, "expected a host path")
    return Path(value).expanduser().absolute()
