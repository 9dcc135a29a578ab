"""State directories that name their owner, and the sweep that removes those whose owner is gone.

Every temporary directory vmtest makes for a run (``/tmp/vmtest-net-*``, a
machine's ``/tmp/vmtest-<name>-*``, screenshots, OCR scratch) holds a small
file :data:`OWNER_FILE`: the pid of the process that made it and that
process's start time (``/proc/<pid>/stat`` field 22, so a reused pid is not
mistaken for the owner). A run killed with SIGKILL cannot remove its
directories; the next vmtest run on the host (:func:`sweep`, at session start
and in ``vmtest cache gc``) removes every one whose owner is gone, never one
whose owner still runs, and logs how much it freed at debug level.

A directory without an owner file is never touched: it may belong to an
older vmtest, to ``vmtest run-vm`` (its ``vmtest-<name>.XXXX`` directories),
or to someone else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vmtest.core import keptdisks
from vmtest.core.cache import Cache, disk_usage
from vmtest.core.errors import HostError

OWNER_FILE = ".vmtest-owner"
PREFIX = "vmtest-"
# image builds make their directory trees here when the host has the memory (vmtest.image.scratch)
BUILD_TREE_PARENT = Path("/dev/shm")
BUILD_TREE_PREFIX = "vmtest-build-"
SOCKET_PATH_MAX = 107  # bytes of a unix socket's path (sun_path holds 108 with the closing NUL)


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if there is no such process
    (or only its zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):  # a zombie is gone (no parent may ever reap it in a container)
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Owner:
    pid: int
    start: int | None

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), process_start(os.getpid()))

    def alive(self) -> bool:
        """Whether the owning process still runs (same pid and same start time)."""
        start = process_start(self.pid)
        return start is not None and (self.start is None or start == self.start)


def mark(directory: Path) -> Path:
    """Name this process as the owner of ``directory`` (returns ``directory``)."""
    me = Owner.me()
    (directory / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "start": me.start}) + "\n")
    return directory


def hand_over(directory: Path, pids: list[int]) -> None:
    """Name the processes ``pids`` as owners of ``directory`` as well (a machine kept after the run,
    ``--vm-keep-on-failure``: its supervisor outlives this process; the directory stays while any lives).
    A directory without an owner file is left as it is."""
    path = directory / OWNER_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    also = list(data.get("also", []))
    also += [[pid, process_start(pid)] for pid in pids]
    data["also"] = also
    tmp = path.with_name(f"{OWNER_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def make(prefix: str, parent: Path | None = None, socket_room: int = 0) -> Path:
    """A fresh directory ``<parent>/<prefix>XXXXXXXX`` (default parent: the system temporary directory)
    owned by this process.

    ``socket_room``: the longest relative path (with its leading ``/``) of a unix socket that will be made
    below it; a directory too long for it is a :class:`HostError` naming the directory and what to do
    (else a switch or QEMU would fail later with a truncated socket path)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if socket_room and len(os.fsencode(path)) + socket_room > SOCKET_PATH_MAX:
        path.rmdir()
        where = parent or tempfile.gettempdir()
        raise HostError(
            f"the temporary directory {where} is too long for the unix sockets vmtest makes below it: "
            f"{path} ({len(os.fsencode(path))} bytes) + a socket name of up to {socket_room} bytes exceeds "
            f"the {SOCKET_PATH_MAX} bytes of a socket path (set TMPDIR to a shorter directory, e.g. TMPDIR=/tmp)"
        )
    return mark(path)


def socket_home(directory: Path, room: int) -> Path:
    """Where the unix sockets that belong below ``directory`` live: in it when its longest socket path
    (``room`` bytes more, leading ``/`` included) fits in a socket address (:data:`SOCKET_PATH_MAX`), else in
    ``<system temporary directory>/vmtest-sockets-<hash of directory>`` (every process finds the same one:
    a kept machine's ``vmtest attach``). A directory vmtest makes is always short enough; a given one
    (``--vm-keep-state`` below a deep checkout or pytest-xdist's longer ``tmp_path``) may not be."""
    if len(os.fsencode(directory)) + room <= SOCKET_PATH_MAX:
        return directory
    digest = hashlib.sha256(os.fsencode(os.path.abspath(directory))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"{PREFIX}sockets-{digest}"


def make_socket_home(directory: Path, room: int) -> Path:
    """Make :func:`socket_home` of ``directory`` if it lies elsewhere (owned by this process, so that a later
    run removes it once this one is gone); a :class:`HostError` when even that is too long."""
    home = socket_home(directory, room)
    if home != directory:
        if len(os.fsencode(home)) + room > SOCKET_PATH_MAX:
            raise HostError(
                f"{directory} and the temporary directory {home.parent} are both too long for the unix sockets "
                f"vmtest makes (at most {SOCKET_PATH_MAX} bytes a path): set TMPDIR to a shorter directory, "
                "e.g. TMPDIR=/tmp"
            )
        home.mkdir(mode=0o700, exist_ok=True)
        mark(home)
    return home


def drop_socket_home(directory: Path, room: int) -> None:
    """Remove :func:`socket_home` of ``directory`` if it lies elsewhere (idempotent)."""
    home = socket_home(directory, room)
    if home != directory:
        shutil.rmtree(home, ignore_errors=True)


def owner_of(directory: Path) -> Owner | None:
    """The recorded owner of ``directory``; None when it has no (readable) owner file."""
    owners = owners_of(directory)
    return owners[0] if owners else None


def owners_of(directory: Path) -> list[Owner]:
    """Every recorded owner of ``directory`` (the maker first, then those it was handed over to)."""
    try:
        data = json.loads((directory / OWNER_FILE).read_text())
        pairs = [[data["pid"], data.get("start")], *data.get("also", [])]
        return [Owner(int(pid), None if start is None else int(start)) for pid, start in pairs]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def orphans(parent: Path | None = None, prefix: str = PREFIX) -> list[Path]:
    """The directories ``<parent>/<prefix>*`` whose recorded owner is gone."""
    root = parent or Path(tempfile.gettempdir())
    try:
        candidates = sorted(p for p in root.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []
    found = []
    for path in candidates:
        if path.is_symlink() or not path.is_dir():
            continue
        owners = owners_of(path)
        if owners and not any(owner.alive() for owner in owners):
            found.append(path)
    return found


def sweep(logger: logging.Logger, parent: Path | None = None, prefix: str = PREFIX) -> tuple[int, int]:
    """Remove the orphaned state directories (:func:`orphans`); returns (how many, bytes freed). Without
    ``parent``: those in the temporary directory and the image builds' trees in :data:`BUILD_TREE_PARENT`."""
    places = [(parent, prefix)] if parent is not None else [(None, prefix), (BUILD_TREE_PARENT, BUILD_TREE_PREFIX)]
    count = freed = 0
    for where, start in places:
        for path in orphans(where, start):
            size = disk_usage(path)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                count += 1
                freed += size
    if count:
        logger.debug(
            "removed %d state director%s left by killed runs (%.1f MiB)",
            count,
            "y" if count == 1 else "ies",
            freed / (1 << 20),
        )
    return count, freed


def sweep_leftovers(cache: Cache, logger: logging.Logger) -> tuple[int, int]:
    """Everything killed runs left on this host: orphaned state directories (:func:`sweep`), references
    of disks that are gone (:mod:`vmtest.core.keptdisks`) and the cache's partial builds
    (:meth:`Cache.sweep_partial`). Returns (how many, bytes freed)."""
    count, freed = sweep(logger)
    keptdisks.needed(cache.refs)  # drops the references of disks that are gone (a run's temporary overlays)
    removed = cache.sweep_partial()
    if removed:
        size = sum(s for _, s in removed)
        logger.debug("removed %d partial build(s) left by killed builds (%.1f MiB)", len(removed), size / (1 << 20))
        count += len(removed)
        freed += size
    return count, freed
