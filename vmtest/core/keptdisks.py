"""References from disks outside the cache (a kept overlay, a ``run-vm`` disk) to the cache entries they
are overlays on, so that cache maintenance never pulls a base from under a kept machine.

A machine's root disk is a qcow2 overlay whose header names its backing file
(an image's ``root.qcow2``, or a snapshot's disk, itself on an image). Each
time vmtest creates such a disk it records a reference in the cache's
``refs/`` directory: the disk's path and the identity (size, modification
time) of every file of its backing chain at that moment. ``vmtest cache gc``
(even ``--all``) keeps every entry a live reference needs; references whose
disk is gone are dropped. When a kept disk is used again, :func:`check`
compares its chain with the recorded one: a base that was removed or rebuilt
(``--vm-rebuild``; a rebuilt image has other bytes, the overlay would be
garbage) is a :class:`~vmtest.core.errors.LaunchError` naming the command
that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from vmtest.core.errors import LaunchError

QCOW2_MAGIC = b"QFI\xfb"
MAX_CHAIN = 16


def backing_file(disk: Path) -> Path | None:
    """The backing file named in the header of the qcow2 file ``disk`` (absolute), or None."""
    try:
        with open(disk, "rb") as fh:
            header = fh.read(20)
            if len(header) < 20 or header[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if offset == 0 or size == 0 or size > 4096:
                return None
            fh.seek(offset)
            name = fh.read(size).decode("utf-8", errors="replace")
    except OSError:
        return None
    path = Path(name)
    return path if path.is_absolute() else disk.parent / path


def backing_chain(disk: Path) -> list[Path]:
    """The backing files of ``disk``, nearest first (those that exist and the first missing one)."""
    chain: list[Path] = []
    current = disk
    while len(chain) < MAX_CHAIN:
        parent = backing_file(current)
        if parent is None:
            break
        chain.append(parent)
        if not parent.exists():
            break
        current = parent
    return chain


def _identity(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _ref_file(refs: Path, disk: Path) -> Path:
    return refs / (hashlib.sha256(str(disk.absolute()).encode()).hexdigest()[:20] + ".json")


def record(refs: Path, disk: Path, chain: list[Path] | None = None) -> Path:
    """Record that ``disk`` is an overlay on its backing chain (``chain``: the chain it will have, for a
    disk not yet created). Returns the reference file."""
    disk = disk.absolute()
    chain = backing_chain(disk) if chain is None else chain
    refs.mkdir(parents=True, exist_ok=True)
    ref = _ref_file(refs, disk)
    data = {"disk": str(disk), "chain": [[str(p), _identity(p)] for p in chain]}
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, ref)
    return ref


def needed(refs: Path) -> set[Path]:
    """Every file that a disk with a live reference is an overlay on; drops references whose disk is gone."""
    files: set[Path] = set()
    if not refs.is_dir():
        return files
    for ref in refs.glob("*.json"):
        try:
            data = json.loads(ref.read_text())
            disk = Path(data["disk"])
        except (OSError, ValueError, KeyError, TypeError):
            ref.unlink(missing_ok=True)
            continue
        if not disk.exists():
            ref.unlink(missing_ok=True)
            continue
        files.update(backing_chain(disk))
        files.update(Path(p) for p, _ in data.get("chain", []))
    return files


def check(refs: Path | None, disk: Path, machine: str) -> None:
    """Before ``disk`` (an existing kept root disk of ``machine``) is used again: its backing chain is
    there and is the one it was made on, else a LaunchError saying what to run. (A removed base cannot be
    rebuilt bit for bit: images are not reproducible, so the fix is another cache or a fresh disk.)"""
    chain = backing_chain(disk)
    if chain and not chain[-1].exists():
        raise LaunchError(
            machine,
            "opening its kept root disk",
            f"{disk} is an overlay on {chain[-1]}, which is gone (removed by hand, or by a `vmtest cache gc` "
            f"that did not know of this disk). If that file lives in another cache, point VMTEST_CACHE_DIR "
            f"(--vm-cache-dir) at it; else remove the kept disk to start afresh: rm {disk}",
        )
    if refs is None:
        return
    try:
        recorded = json.loads(_ref_file(refs, disk.absolute()).read_text()).get("chain", [])
    except (OSError, ValueError, AttributeError):
        return  # made by an older vmtest or by hand: nothing to compare with
    for path, identity in recorded:
        now = _identity(Path(path))
        if identity is not None and now is not None and now != identity:
            raise LaunchError(
                machine,
                "opening its kept root disk",
                f"{disk} is an overlay on {path}, which was rebuilt after the disk was made (--vm-rebuild or "
                f"`vmtest build --rebuild`): its blocks no longer match, the kept state cannot be used on it. "
                f"Remove the kept disk to start afresh: rm {disk}",
            )
