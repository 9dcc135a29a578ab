"""The host's memory as the kernel reports it (``/proc/meminfo``)."""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_mib(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` in MiB: what can be allocated without swapping (None when unknown)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
