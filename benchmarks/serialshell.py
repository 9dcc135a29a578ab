#!/usr/bin/env python3
"""The serial-console shell of a foreign machine beside vmtest's backdoor, in one run. Prints a table.

    .venv/bin/python benchmarks/serialshell.py [--commands 100]

Measures, on this machine, with the accelerator vmtest picks:
  - command round trip (``succeed("true")``, median of N sequential commands), over the backdoor of a
    vmtest machine and over the serial shell of a foreign one (the Debian image of
    tests/integration/test_foreign.py, booted by GRUB from its disk: built first if pytest's cache has none);
  - 1 MiB of output (``head -c 1048576 /dev/zero``): the backdoor; the serial shell as it comes and as base64;
  - boot to the first command (launch -> login done, for the foreign machine), and for the foreign machine
    restored from its booted snapshot (saved first if the cache has none).
Nothing here fails.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from table import print_table  # noqa: E402
from test_foreign import build_debian_image, debian_cache, grub_config  # noqa: E402

from vmtest import Machine, MachineConfig  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402

MIB = "head -c 1048576 /dev/zero"


def measure(vm: Machine, commands: int) -> dict[str, float]:
    start = time.monotonic()
    vm.succeed("true")
    boot = time.monotonic() - vm.vm.launched_at
    del start
    trips = []
    for _ in range(commands):
        t = time.monotonic()
        vm.succeed("true")
        trips.append(time.monotonic() - t)
    t = time.monotonic()
    assert len(vm.succeed(MIB)) == 1 << 20
    mib = time.monotonic() - t
    return {"boot": boot, "trip": statistics.median(trips), "mib": mib}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    store = ImageStore()
    debian = build_debian_image(debian_cache(store))

    own = Machine("bench-own", MachineConfig(), store=store, snapshots=False)
    try:
        backdoor = measure(own, args.commands)
    finally:
        own.release()
    foreign = Machine("bench-foreign", grub_config(debian), store=store, snapshots=False)
    try:
        serial = measure(foreign, args.commands)
        shell = foreign.vm.channels.shell if foreign.vm.channels is not None else None
        t = time.monotonic()
        result = shell.run(MIB, 300, binary=True)  # type: ignore[union-attr,call-arg]
        assert len(result.output) == 1 << 20
        serial_b64 = time.monotonic() - t
    finally:
        foreign.release()
    restored = {"boot": float("nan")}
    for _ in range(2):  # the first saves the snapshot when the cache has none
        foreign = Machine("bench-foreign", grub_config(debian), store=store, snapshots=True)
        try:
            restored = measure(foreign, 1)
            path = foreign.vm.start_path.name
        finally:
            foreign.release()
        if path.startswith("restore"):
            break

    rows = [
        ("round trip, backdoor (vmtest guest)", f"{backdoor['trip'] * 1000:.1f} ms", "design: 8 ms"),
        ("round trip, serial shell (foreign guest)", f"{serial['trip'] * 1000:.1f} ms", ""),
        ("1 MiB output, backdoor", f"{backdoor['mib']:.2f} s", ""),
        ("1 MiB output, serial shell (raw)", f"{serial['mib']:.2f} s", ""),
        ("1 MiB output, serial shell (base64)", f"{serial_b64:.2f} s", ""),
        ("launch -> first command, vmtest guest (direct boot)", f"{backdoor['boot']:.1f} s", ""),
        ("launch -> first command, foreign (GRUB + serial login)", f"{serial['boot']:.1f} s", ""),
        ("launch -> first command, foreign restored from its snapshot", f"{restored['boot']:.2f} s", ""),
        ("serial / backdoor round trip", f"{serial['trip'] / backdoor['trip']:.1f}x", ""),
    ]
    print_table(rows, f"serial shell vs backdoor, {args.commands} commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
