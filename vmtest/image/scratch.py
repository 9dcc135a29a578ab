"""Where an image build makes its directory tree: in memory when the host has room.

A build writes every file of the guest's root once (mmdebstrap, or the base
layer unpacked) and reads it once (``mkfs.ext4 -d``), then deletes the tree.
On the host kind CI runs on, creating a file on the root file system costs
~0.7 ms (unpacking the 7,200 files of a base layer: 6.4 s there, 0.2 s on
tmpfs), so the tree goes to ``/dev/shm`` (Debian mounts a tmpfs there, half
the RAM by default) when it is a tmpfs with :data:`NEEDED_MIB` free and the
host has as much memory available; otherwise it stays in the build directory
in the cache, as before.

The directory is ``/dev/shm/vmtest-build-*`` with an owner file
(:mod:`vmtest.core.statedirs`): a build killed with SIGKILL leaves it behind
and the next run's sweep (pytest session start, ``vmtest cache gc``) removes
it (:func:`vmtest.core.statedirs.sweep_leftovers`), as it removes other
state directories whose owner is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmtest.core import meminfo, statedirs
from vmtest.core.statedirs import BUILD_TREE_PARENT as SHM_PARENT
from vmtest.core.statedirs import BUILD_TREE_PREFIX

NEEDED_MIB = 2048  # a large image's tree (X11, a desktop's packages) is ~1 GiB; two builds may run at once


def fs_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system ``path`` is on (the longest mount point above it in /proc/mounts)."""
    try:
        text = mounts if mounts is not None else Path("/proc/mounts").read_text()
    except OSError:
        return None
    best, found = -1, None
    resolved = str(path.resolve())
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) > best:
            best, found = len(point), fields[2]
    return found


def in_memory(shm: Path = SHM_PARENT, needed_mib: int = NEEDED_MIB) -> bool:
    """Whether ``shm`` is a tmpfs with ``needed_mib`` free and the host has that much memory available."""
    try:
        st = os.statvfs(shm)
    except OSError:
        return False
    free = st.f_bavail * st.f_frsize // (1 << 20)
    available = meminfo.available_mib()
    return fs_type(shm) == "tmpfs" and free >= needed_mib and available is not None and available >= needed_mib


@contextmanager
def tree_dir(fallback: Path, label: str, shm: Path = SHM_PARENT) -> Iterator[Path]:
    """A directory for a build's tree (not yet existing, its parent does): under ``shm`` when
    :func:`in_memory` (``<shm>/vmtest-build-<label>.<random>/root``), else ``fallback``. Removed on the way
    out either way."""
    if not in_memory(shm):
        try:
            yield fallback
        finally:
            shutil.rmtree(fallback, ignore_errors=True)
        return
    parent = Path(tempfile.mkdtemp(prefix=f"{BUILD_TREE_PREFIX}{label}.", dir=shm))
    try:
        statedirs.mark(parent)
        yield parent / "root"
    finally:
        shutil.rmtree(parent, ignore_errors=True)
