"""Will these machines fit in the host's memory? Asked before booting several at once. And the QEMU
arguments that keep each machine's share small (:func:`tcg_accel`, :func:`balloon_args`).

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
# TCG's translated-code buffer (MiB). QEMU's default under TCG is 1 GiB: it fills with translated code as the
# guest runs and is never handed back, ~420 MiB of an idle 1024 MiB machine's ~590 MiB resident memory after
# one boot. 128 MiB held ~260 MiB of QEMU's memory besides guest RAM (64: ~190, but the X11 and web server
# examples ran ~10% slower, retranslating after flushes). benchmarks/memory.py measures it; README "Many
# machines on one host" has the table.
TCG_BUFFER_MIB = 128


def tcg_accel() -> str:
    """QEMU's ``-accel`` value under TCG: one host thread per vCPU, the bounded translation buffer."""
    return f"tcg,thread=multi,tb-size={TCG_BUFFER_MIB}"


def balloon_args() -> list[str]:
    """A virtio balloon with free-page reporting (never inflated): the guest reports the pages it frees, in
    blocks of 2 MiB or more, and QEMU gives them back to the host, so a machine's resident memory falls again
    after a test's work (after 64 MiB written and removed: guest RAM ~185 MiB instead of ~250)."""
    return ["-device", "virtio-balloon-pci,free-page-reporting=on"]


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
