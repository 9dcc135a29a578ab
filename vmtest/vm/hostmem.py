"""Will these machines fit in the host's memory? Asked before booting several at once.

A guest can touch all of its ``memory_size``; QEMU itself (device models,
the TCG translation cache, buffers) adds roughly :data:`QEMU_OVERHEAD_MIB`
on top. Machines started together that need more than the host's
``MemAvailable`` are refused with a :class:`~vmtest.core.errors.HostError`
before any of them boots, instead of being killed by the OOM killer half-way
through a test.
"""

from __future__ import annotations

from collections.abc import Mapping

from vmtest.core.errors import HostError

QEMU_OVERHEAD_MIB = 96


def needed_mib(memory: Mapping[str, int]) -> int:
    """MiB that machines of ``memory`` (name -> memory_size) may use together (pure)."""
    return sum(size + QEMU_OVERHEAD_MIB for size in memory.values())


def check_fits(memory: Mapping[str, int], available_mib: int | None) -> None:
    """HostError when ``memory`` (name -> memory_size, the machines about to start) cannot fit in
    ``available_mib`` (None: unknown, not checked)."""
    if available_mib is None or not memory:
        return
    need = needed_mib(memory)
    if need <= available_mib:
        return
    largest = max(memory, key=lambda n: memory[n])
    raise HostError(
        f"starting {len(memory)} machine(s) at once needs about {need} MiB (their memory_size, "
        f"{sum(memory.values())} MiB, plus ~{QEMU_OVERHEAD_MIB} MiB of QEMU each) but the host has "
        f"{available_mib} MiB available; none was started. Start fewer machines, lower "
        f"virtualisation.memory_size (the largest: {largest}, {memory[largest]} MiB), or free memory on the host"
    )
