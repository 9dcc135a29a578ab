#!/usr/bin/env python3
"""vmtest benchmarks: prints a table of measured times and sizes.

    .venv/bin/python benchmarks/bench.py [--boots 3] [--skip-cold]

Measures, on this machine, with the accelerator vmtest picks:
  - cold image build of base + nginx-light into an empty cache (kernel .deb
    and guest packages downloaded), and with the .deb cache warm;
  - cached build (a hit);
  - boot to backdoor shell (launch of QEMU -> first command possible);
  - command round trip (succeed("true")), 100 sequential commands;
  - 1 MiB output transfer;
  - memory (RSS) of one idle guest's QEMU process.
Targets from the issues are printed beside the numbers; nothing here fails.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmtest import Machine, MachineConfig  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

NGINX = MachineConfig(packages=["nginx-light"])


def timed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true", help="skip the two cold builds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows: list[tuple[str, str, str]] = []

    if not args.skip_cold:
        cold_dir = Path(tempfile.mkdtemp(prefix="vmtest-bench-cache-"))
        try:
            t, _ = timed(lambda: ImageStore(cold_dir).get(NGINX))
            rows.append(("cold build, empty cache (base + nginx-light)", f"{t:.1f} s", "<= 90 s"))
            shutil.rmtree(cold_dir / "images")
            t, _ = timed(lambda: ImageStore(cold_dir).get(NGINX))
            rows.append(("cold image build, .debs and kernel cached", f"{t:.1f} s", ""))
        finally:
            shutil.rmtree(cold_dir, ignore_errors=True)

    store = ImageStore()
    store.get(NGINX)
    t, _ = timed(lambda: store.get(NGINX))
    rows.append(("cached build (hit)", f"{t * 1000:.0f} ms", "< 2 s"))

    boots, rss = [], []
    for i in range(args.boots):
        vm = Machine(f"bench{i}", NGINX, store=store, snapshots=False)  # real boots (benchmarks/snapshots.py)
        try:
            vm.start()
            t, _ = timed(vm.connect)
            boots.append(time.monotonic() - vm.vm.launched_at)
            if i == 0:
                vm.execute("systemctl is-system-running --wait", timeout=300)  # let the boot settle
                trips = []
                for _ in range(100):
                    s, _ = timed(lambda vm=vm: vm.execute("true"))
                    trips.append(s)
                rows.append(
                    (
                        "command round trip succeed('true'), median of 100",
                        f"{statistics.median(trips) * 1000:.1f} ms",
                        "<= 20 ms",
                    )
                )
                rows.append(("100 sequential commands", f"{sum(trips):.2f} s", ""))
                t, out = timed(lambda vm=vm: vm.succeed("head -c 1048576 /dev/urandom"))
                rows.append(("1 MiB of binary output (base64 path)", f"{t:.2f} s", ""))
                t, out = timed(lambda vm=vm: vm.succeed("head -c 1048576 /dev/zero | tr '\\0' a"))
                rows.append(("1 MiB of text output (raw path)", f"{t:.2f} s", ""))
                time.sleep(5)
                assert vm.pid is not None
                rss.append(rss_mib(vm.pid))
        finally:
            vm.release()
    rows.append((f"boot to backdoor shell, median of {len(boots)}", f"{statistics.median(boots):.1f} s", "<= 12 s"))
    rows.append(("idle guest QEMU RSS (1024 MiB guest)", f"{rss[0]:.0f} MiB", ""))

    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
