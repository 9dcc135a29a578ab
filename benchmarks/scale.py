#!/usr/bin/env python3
"""Many machines on one host: N machines on one VLAN, all started, every one pinging every other.

    .venv/bin/python benchmarks/scale.py [--counts 1,2,4,8,16] [--memory 1024]

For each N prints the time from start_all() to every shell answering (all-up), the time for a full mesh of
pings (each machine pings every other once, all machines at once), and the total resident memory of the N
QEMU processes (VmRSS once all are up and the mesh is done). Machines cold-boot (snapshots off), from the
base image (built once if missing). A count that does not fit in the host's available memory is refused
before anything boots (vmtest.vm.hostmem) and reported as such. Target from the issue: 16 machines up and
meshed in <= 180 s with total RSS <= 8 GiB on a 2-core, 24 GiB host.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

from vmtest import MachineConfig  # noqa: E402
from vmtest.core.errors import HostError  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402
from vmtest.net.driver import Driver  # noqa: E402


def rss_mib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def measure(n: int, config: MachineConfig, store: ImageStore) -> tuple[str, str, str]:
    """(all-up seconds, full-mesh seconds, total RSS MiB) for ``n`` machines, as text."""
    names = [f"m{i}" for i in range(1, n + 1)]
    driver = Driver(dict.fromkeys(names, config), store, snapshots=False)
    try:
        start = time.monotonic()
        try:
            driver.start_all()
        except HostError as exc:
            return "refused", "-", str(exc).split(";")[0]
        driver.join_all()
        up = time.monotonic() - start
        start = time.monotonic()

        def ping_all(name: str) -> None:
            others = [o for o in names if o != name]
            if others:
                driver.machines[name].succeed(" && ".join(f"busybox ping -c1 -W5 {o} >/dev/null" for o in others))

        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(ping_all, names))
        mesh = time.monotonic() - start
        rss = sum(rss_mib(m.vm.pid) for m in driver.machines.values())
        return f"{up:.1f} s", f"{mesh:.1f} s", f"{rss} MiB"
    finally:
        driver.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4,8,16", help="machine counts, comma-separated")
    parser.add_argument("--memory", type=int, default=1024, help="memory_size of each machine (MiB)")
    args = parser.parse_args()
    config = MachineConfig(virtualisation={"memory_size": args.memory})
    store = ImageStore()
    store.get(config)
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        up, mesh, rss = measure(n, config, store)
        print(f"N={n}: all-up {up}, full mesh {mesh}, total QEMU RSS {rss}", flush=True)
        rows += [(f"N={n} all-up", up, ""), (f"N={n} full mesh", mesh, ""), (f"N={n} total QEMU RSS", rss, "")]
    rows.append(("target (N=16)", "", "up + mesh <= 180 s, RSS <= 8 GiB"))
    print_table(rows, f"scale: {args.memory} MiB machines on one VLAN, TCG/KVM as the host allows")


if __name__ == "__main__":
    main()
