"""A disk image's own kernel and initrd, pulled out of its ext2/3/4 file system with ``debugfs`` (no mount).

For a foreign image booted directly (``ForeignImage(kernel=..., initrd=...)``)
when its boot loader is not wanted or not there. The image may be qcow2 (a
raw copy is made first) or raw, a whole-disk file system or a partitioned
disk (each partition is tried, in order, with debugfs's ``offset=`` option).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmtest.core.errors import HostError, ImageBuildError

_VERSIONED = re.compile(r"^vmlinuz-(\S+)$")


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initrd: Path
    release: str


def _debugfs(image: Path, offset: int, request: str) -> subprocess.CompletedProcess[str]:
    target = f"{image}?offset={offset}" if offset else str(image)
    return subprocess.run(["debugfs", "-R", request, target], capture_output=True, text=True, check=False)


def _offsets(image: Path) -> list[int]:
    """0 (a whole-disk file system), then the byte offset of each partition."""
    done = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return [0]
    table = json.loads(done.stdout).get("partitiontable", {})
    sector = int(table.get("sectorsize", 512))
    return [0] + [int(p["start"]) * sector for p in table.get("partitions", [])]


def extract(image: Path, out_dir: Path, logger: logging.Logger | None = None) -> BootFiles:
    """Copy the newest ``/boot/vmlinuz-*`` and its ``initrd.img-*`` out of ``image`` into ``out_dir``."""
    for tool in ("debugfs", "qemu-img"):
        if shutil.which(tool) is None:
            raise HostError(f"extracting a kernel from an image needs {tool} (e2fsprogs, qemu-utils)")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = image
    with open(image, "rb") as f:
        if f.read(4) == b"QFI\xfb":
            raw = out_dir / "disk.raw"
            subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    try:
        for offset in _offsets(raw):
            listing = _debugfs(raw, offset, "ls -l /boot")
            names = re.findall(r"\s(vmlinuz-\S+)\s*$", listing.stdout, re.M)
            releases = sorted(m.group(1) for name in names if (m := _VERSIONED.match(name)))
            if not releases:
                continue
            release = releases[-1]
            kernel, initrd = out_dir / f"vmlinuz-{release}", out_dir / f"initrd.img-{release}"
            for src, dest in ((f"/boot/vmlinuz-{release}", kernel), (f"/boot/initrd.img-{release}", initrd)):
                _debugfs(raw, offset, f"dump {src} {dest}")
                if not dest.is_file() or dest.stat().st_size == 0:
                    raise ImageBuildError("extracting the boot files", f"debugfs could not copy {src} out of {image}")
            if logger is not None:
                logger.info("kernel %s and its initrd pulled out of %s (offset %d)", release, image, offset)
            return BootFiles(kernel, initrd, release)
    finally:
        if raw != image:
            raw.unlink(missing_ok=True)
    raise ImageBuildError(
        "extracting the boot files", f"no ext2/3/4 file system of {image} has a /boot/vmlinuz-<release>"
    )
