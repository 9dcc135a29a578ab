"""Package names checked against the host's apt lists before an image is built.

mmdebstrap resolves packages through the host's apt sources, so a name the
host's lists do not know fails the build after a whole bootstrap (15 s or
more). :func:`check` asks apt (``apt-cache --all-names pkgnames``: real
and virtual packages, 1-3 s; the names are kept in the cache until the
lists change, then a check takes about 0.1 s) and raises a ConfigError naming
the closest real package. When it cannot tell (no lists for the suite, apt
missing or failing) it says nothing and the build goes on: it never guesses.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
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


APT_PREFERENCES = Path("/etc/apt")


def lists_signature(lists: Path = APT_LISTS) -> str:
    """The names, sizes and modification times of the host's Packages indexes (they change on apt update)."""
    return _signature(sorted(lists.glob("*Packages*")))


def policy_signature(lists: Path = APT_LISTS, etc: Path = APT_PREFERENCES) -> str:
    """:func:`lists_signature` and the same of apt's pinning (``preferences``, ``preferences.d/*``): what
    decides which version of a package apt picks."""
    pins = sorted([etc / "preferences", *etc.glob("preferences.d/*")])
    return lists_signature(lists) + "\n--\n" + _signature(pins)


def _signature(paths: Iterable[Path]) -> str:
    parts = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append(f"{path.name} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(parts)


@functools.lru_cache(maxsize=4)
def known_names(saved: Path | None = None) -> frozenset[str] | None:
    """Every package name apt knows on this host (virtual ones too), or None when apt cannot tell.
    ``saved``: a file keeping them between runs while the lists stay the same (apt takes 1-3 s to list
    them on a loaded host, reading the file about 0.1 s)."""
    signature = lists_signature()
    if saved is not None:
        try:
            head, _, body = saved.read_text().partition("\n\n")
            if head == signature:
                return frozenset(body.split())
        except OSError:
            pass
    try:
        done = subprocess.run(
            ["apt-cache", "--all-names", "pkgnames"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = frozenset(done.stdout.split())
    if done.returncode != 0 or not names:
        return None
    if saved is not None:
        keep_answer(saved, signature + "\n\n" + "\n".join(sorted(names)) + "\n")
    return names


def keep_answer(path: Path, text: str) -> None:
    """Write an answer of apt kept in the cache (``text``) to ``path`` atomically; a failure only costs the
    next process the question to apt."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass


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


def check(
    packages: Iterable[str], suite: str, logger: logging.Logger, saved: Path | None = None, field: str = "packages"
) -> None:
    """ConfigError for the first package the host's apt lists of ``suite`` do not know (``saved``: see
    :func:`known_names`)."""
    packages = list(packages)
    if not packages or not has_lists(suite):
        return
    names = known_names(saved)
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
