#!/usr/bin/env python3
"""Boot paths side by side in one run: boot to the first command, snapshots off. Prints a table.

    .venv/bin/python benchmarks/bootpaths.py [--runs 3]

Measures, on this machine, QEMU launch -> first command answered (median of N cold boots) for:
  - direct boot (QEMU's SeaBIOS loading the kernel, the default);
  - qboot (``bios=/usr/share/qemu/qboot.rom``);
  - direct boot with a TPM (swtpm; the kernel is booted as a bzImage, not through PVH);
  - BIOS + GRUB (``use_boot_loader``: SeaBIOS -> GRUB from the bootable disk, menu timeout 0);
  - UEFI (OVMF) with direct kernel boot, UEFI from the bootable disk (OVMF -> GRUB), Secure Boot from the
    disk (q35 + SMM, OVMF -> shim -> GRUB -> kernel, each signature checked) and Secure Boot with direct boot;
and the build time of a bootable disk (median of N builds into a scratch cache, the image cached).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

from vmtest import Machine, MachineConfig  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402

PATHS = {
    "direct boot (SeaBIOS)": {},
    "qboot": {"bios": "/usr/share/qemu/qboot.rom"},
    "direct boot + TPM (swtpm)": {"tpm": {"enable": True}},
    "BIOS + GRUB (use_boot_loader)": {"use_boot_loader": True},
}
UEFI_PATHS = {
    "UEFI (OVMF), direct kernel boot": {"use_efi_boot": True},
    "UEFI (OVMF) -> GRUB from disk": {"use_efi_boot": True, "use_boot_loader": True},
    "Secure Boot: OVMF -> shim -> GRUB -> kernel": {
        "use_efi_boot": True,
        "use_secure_boot": True,
        "use_boot_loader": True,
    },
    "Secure Boot, direct kernel boot": {"use_efi_boot": True, "use_secure_boot": True},
}


def bootdisk_build(store: ImageStore, config: MachineConfig) -> float:
    """Seconds to build the bootable disk of ``config``'s (cached) image, in a scratch cache."""
    import tempfile

    from vmtest.core.cache import Cache
    from vmtest.image import bootdisk

    image = store.get(MachineConfig(suite=config.suite, packages=list(config.packages)))
    spec = bootdisk.spec_for(config.virtualisation)
    assert spec is not None
    # (not in the cache's tmp/: a starting pytest session sweeps what looks like a killed build there)
    with tempfile.TemporaryDirectory(dir=store.cache.root, prefix=".bench-bootdisk-") as scratch:
        start = time.monotonic()
        store.build_bootdisk(image, spec, Cache(Path(scratch)))
        return time.monotonic() - start


def first_command(store: ImageStore, config: MachineConfig, name: str) -> float:
    """Seconds from QEMU's launch to the first command's answer (a cold boot)."""
    vm = Machine(name, config, store=store, snapshots=False)
    try:
        vm.connect()
        vm.succeed("true")
        return time.monotonic() - vm.vm.launched_at
    finally:
        vm.release()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    store = ImageStore()
    rows = []
    for label, virt in {**PATHS, **UEFI_PATHS}.items():
        config = MachineConfig(virtualisation=virt)
        store.get(config)  # the image is built (or found) outside the timing
        times = [first_command(store, config, f"bench{i}") for i in range(args.runs)]
        rows.append(
            (f"{label}: launch -> first command (median of {args.runs})", f"{statistics.median(times):.2f}s", "")
        )
    loader = MachineConfig(virtualisation=PATHS["BIOS + GRUB (use_boot_loader)"])
    builds = [bootdisk_build(store, loader) for _ in range(args.runs)]
    rows.append((f"bootable disk build (median of {args.runs})", f"{statistics.median(builds):.2f}s", ""))
    print_table(rows, "boot paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
