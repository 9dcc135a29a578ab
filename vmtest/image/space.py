"""Free space for an image build: checked before the build, and a full disk explained after one.

A build needs room for mmdebstrap's tree, the downloaded packages, the raw
ext4 file and the qcow2 image at once: about :data:`NEEDED_MIB` for a
small image (the base image is ~500 MiB of qcow2 from ~400 MiB of files).
When the file system of the cache has less, the build stops before it
starts; when it fills up anyway (a bigger package set, another writer), the
error says so instead of quoting a tool's "No space left on device" alone.
Either way the cache holds no entry that looks complete (entries are
published only when finished, :mod:`vmtest.core.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path

from vmtest.core.errors import ImageBuildError

NEEDED_MIB = 1536
ENOSPC_TEXT = "No space left on device"


def free_mib(path: Path) -> int | None:
    """MiB available to this user on the file system holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize // (1 << 20)
    return None


def _advice(root: Path) -> str:
    return (
        f"building an image needs about {NEEDED_MIB} MiB free in the cache ({root}): free space there, or "
        "point VMTEST_CACHE_DIR (pytest: --vm-cache-dir) at a larger file system"
    )


def check(root: Path) -> None:
    """ImageBuildError before a build when the cache's file system has less than :data:`NEEDED_MIB` free."""
    free = free_mib(root)
    if free is not None and free < NEEDED_MIB:
        raise ImageBuildError("checking free space", f"only {free} MiB free; {_advice(root)}")


def explain(output: str, root: Path, step: str) -> ImageBuildError | None:
    """The error for a build step whose ``output`` says the disk filled up (ENOSPC), else None."""
    if ENOSPC_TEXT not in output:
        return None
    free = free_mib(root)
    now = f"{free} MiB free now" if free is not None else "free space unknown"
    return ImageBuildError(step, f"the disk filled up ({ENOSPC_TEXT}; {now}); {_advice(root)}")
