#!/usr/bin/env python3
"""Where an idle machine's QEMU memory goes, for a few QEMU set-ups (one run, one table).

    .venv/bin/python benchmarks/memory.py [--count 2] [--memory 1024] [--settle 20] [--variants base,vmtest,...]

For each variant boots ``--count`` machines of the base image (cold boots, snapshots off) on one VLAN,
waits until every shell answers (all-up), lets them idle ``--settle`` seconds, runs a small workload in
each (every file under 1 MiB in /usr read, a 64 MiB file written to the root's tmpfs and removed), idles
again, and prints per machine: all-up time, the workload's time, the resident memory of QEMU's guest-RAM
mapping, of the rest (under TCG mostly the translated-code buffer) and the total (VmRSS). Variants:

* ``vmtest``: vmtest's own command line, unchanged;
* ``base``: QEMU's defaults (a 1 GiB translation buffer, no balloon): vmtest before it set them;
* ``tbN``: TCG's translation buffer limited to N MiB (``-accel tcg,tb-size=N``);
* ``report``: a virtio-balloon with free-page reporting (the guest hands freed pages back to the host);
* combinations joined by ``+`` (``tb64+report``).

The variants run through a wrapper of the QEMU binary (``virtualisation.qemu.binary``) that takes vmtest's
own tb-size and balloon out of the command line and puts the variant's in. At most 4 machines at once.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vmtest import MachineConfig  # noqa: E402
from vmtest.core.contract import DEFAULT_QEMU_BINARY  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402
from vmtest.net.driver import Driver  # noqa: E402

WORKLOAD = (
    "find /usr -type f -size -1M -exec cat {} + >/dev/null 2>&1 || true; "
    "dd if=/dev/zero of=/root/big bs=1M count=64 2>&1 && sync && rm /root/big"
)


def wrapper(variant: str, directory: Path) -> str:
    """A QEMU binary for ``variant``: a shell script that rewrites the command line and execs QEMU."""
    script = directory / f"qemu-{variant}"
    if variant == "vmtest":
        script.write_text(f'#!/bin/sh\nexec {DEFAULT_QEMU_BINARY} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return str(script)
    accel = "tcg,thread=multi"
    extra = []
    for part in variant.split("+"):
        if part == "base":
            continue
        if part.startswith("tb"):
            accel += f",tb-size={int(part[2:])}"
        elif part == "report":
            extra += ["-device", "virtio-balloon-pci,free-page-reporting=on"]
        else:
            raise SystemExit(f"unknown variant part {part!r} (vmtest, base, tbN, report)")
    script.write_text(
        "#!/bin/bash\n"
        "args=()\n"
        "while [ $# -gt 0 ]; do\n"
        '  case "$1" in\n'
        f"    tcg,*) args+=({accel}) ;;\n"
        '    -device) case "$2" in virtio-balloon-pci*) shift ;; *) args+=("$1" "$2"); shift ;; esac ;;\n'
        '    *) args+=("$1") ;;\n'
        "  esac\n"
        "  shift\n"
        "done\n"
        f'exec {DEFAULT_QEMU_BINARY} "${{args[@]}}" {" ".join(extra)}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def mappings(pid: int, ram_mib: int) -> tuple[int, int]:
    """(guest RAM RSS, total RSS) of QEMU ``pid`` in MiB: the guest RAM is the mapping of exactly its size."""
    ram = total = 0
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
            total += rss
            if size == ram_mib * 1024:
                ram += rss
    return ram // 1024, total // 1024


def measure(variant: str, count: int, memory: int, settle: float, store: ImageStore, tmp: Path) -> list[tuple]:
    config = MachineConfig(virtualisation={"memory_size": memory, "qemu": {"binary": wrapper(variant, tmp)}})
    names = [f"m{i}" for i in range(1, count + 1)]
    driver = Driver(dict.fromkeys(names, config), store, snapshots=False)
    try:
        start = time.monotonic()
        driver.start_all()
        driver.join_all()
        up = time.monotonic() - start
        time.sleep(settle)
        idle = [mappings(m.vm.pid, memory) for m in driver.machines.values()]
        start = time.monotonic()
        for m in driver.machines.values():
            m.succeed(WORKLOAD, timeout=300)
        work = (time.monotonic() - start) / count
        time.sleep(settle)
        busy = [mappings(m.vm.pid, memory) for m in driver.machines.values()]
    finally:
        driver.release()
    rows = []
    for (ram, total), (ram2, total2) in zip(idle, busy, strict=True):
        idle_text, busy_text = f"{ram}/{total - ram}/{total}", f"{ram2}/{total2 - ram2}/{total2}"
        rows.append((variant, f"{up:.1f} s", f"{work:.1f} s", idle_text, busy_text))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2, help="machines at once (1-4)")
    parser.add_argument("--memory", type=int, default=1024, help="memory_size of each machine (MiB)")
    parser.add_argument("--settle", type=float, default=20, help="idle seconds before each measurement")
    parser.add_argument("--variants", default="base,vmtest")
    args = parser.parse_args()
    if not 1 <= args.count <= 4:
        raise SystemExit("--count: 1 to 4 machines")
    store = ImageStore()
    store.get(MachineConfig())
    rows = []
    with tempfile.TemporaryDirectory(prefix="vmtest-memory-") as tmp:
        for variant in args.variants.split(","):
            for row in measure(variant, args.count, args.memory, args.settle, store, Path(tmp)):
                print(" | ".join(row), flush=True)
                rows.append(row)
    print(f"\nload average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("\n| variant | all-up | workload | idle RSS MiB: guest RAM/other/total | after the workload |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
