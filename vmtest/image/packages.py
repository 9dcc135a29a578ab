"""Package names checked against the host's apt lists before an image is built.

mmdebstrap resolves packages through the host's apt sources, so a name the
host's lists do not know fails the build after a whole bootstrap (15 s or
more). :func:`check` asks apt once (``apt-cache --all-names pkgnames``:
real and virtual packages, about a second) and raises a ConfigError naming
the closest real package. When it cannot tell (no lists for the suite, apt
missing or failing) it says nothing and the build goes on: it never guesses.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from vmtest.core.errors import ConfigError

APT_LISTS = Path("/var/lib/apt/lists")


def has_lists(suite: str, lists: Path = APT_LISTS) -> bool:
    """Whether the host's apt lists hold a Packages index of ``suite`` (else the check would guess)."""
    try:
        return any(lists.glob(f"*_dists_{suite}_*Packages*"))
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def known_names() -> frozenset[str] | None:
    """Every package name apt knows on this host (virtual ones too), or None when apt cannot tell."""
    try:
        done = subprocess.run(
            ["apt-cache", "--all-names", "pkgnames"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = frozenset(done.stdout.split())
    return names if done.returncode == 0 and names else None


def base_name(spec: str) -> str:
    """``nginx-light`` of ``nginx-light=1.22*``, ``nginx-light:amd64`` or ``nginx-light/bookworm``."""
    return re.split(r"[=:/]", spec, maxsplit=1)[0]


def closest(name: str, names: Iterable[str]) -> str | None:
    """The known name closest to a misspelt ``name`` (difflib), or None."""
    candidates = [n for n in names if abs(len(n) - len(name)) <= 3]
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
    return found[0] if found else None


def unknown(packages: Iterable[str], names: frozenset[str]) -> list[str]:
    return [p for p in packages if base_name(p) not in names]


def check(packages: Iterable[str], suite: str, logger: logging.Logger, field: str = "packages") -> None:
    """ConfigError for the first package the host's apt lists of ``suite`` do not know (pure but for apt)."""
    packages = list(packages)
    if not packages or not has_lists(suite):
        return
    names = known_names()
    if names is None:
        logger.debug("package names not checked: apt-cache could not list them")
        return
    missing = unknown(packages, names)
    if not missing:
        return
    name = base_name(missing[0])
    near = closest(name, names)
    raise ConfigError(
        field,
        missing[0],
        f"no such package in Debian {suite} (the host's apt lists, which mmdebstrap uses)",
        f"did you mean {near}?" if near else f"check the spelling with 'apt-cache search {name}'",
    )
