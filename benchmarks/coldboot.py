#!/usr/bin/env python3
"""Cold boot: median time from QEMU's launch to the first command, and to a fully booted system.

    .venv/bin/python benchmarks/coldboot.py [--boots 5] [--configs default,nographics] [--profile]

Each boot is a real cold boot (snapshots off, a fresh root overlay), one machine at a time, the
image built beforehand. For every boot it measures, from QEMU's launch (host monotonic clock):

  - first command: the backdoor shell answered, the per-run set-up was checked (``connect()``) and
    one ``succeed("true")`` came back: the first command a test can run;
  - is-system-running: ``systemctl is-system-running --wait`` returned (the moment the first start
    of a configuration saves its booted snapshot).

The 1-minute load average is printed next to every boot: this machine is shared, and numbers taken
under load are not comparable with quiet ones. ``--profile`` adds the guest's own view of the last
boot of each configuration: kernel, stage-1 and backdoor times (guest clock, from ``dmesg`` and
systemd), ``systemd-analyze``, ``blame`` and the critical chains; ``--save DIR`` keeps its dmesg,
console log and journal. Nothing here fails on a number.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmtest import Machine, MachineConfig  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

CONFIGS = {
    "default": MachineConfig(),
    "nographics": MachineConfig(virtualisation={"graphics": False}),
}

PROFILE_COMMANDS = (
    "systemd-analyze time",
    "systemd-analyze blame --no-pager | head -n 25",
    "systemd-analyze critical-chain --no-pager vmtest-backdoor.service",
    "systemd-analyze critical-chain --no-pager multi-user.target",
)

# Guest-clock milestones in dmesg (seconds since the kernel started).
MARKS = {
    "stage 1 starts (Run /init)": r"\[\s*([\d.]+)\] Run /init as init process",
    "stage 1 hands over (switch_root)": r"\[\s*([\d.]+)\] vmtest-stage1: .*switch_root",
    "systemd runs": r"\[\s*([\d.]+)\] systemd\[1\]: systemd \d+.* running in system mode",
}


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# systemd's own milestones (CLOCK_MONOTONIC, the clock dmesg uses): `systemctl show` property -> name.
SYSTEMD_MARKS = {
    "GeneratorsStartTimestampMonotonic": "systemd runs its generators",
    "GeneratorsFinishTimestampMonotonic": "generators done",
    "UnitsLoadStartTimestampMonotonic": "systemd loads units",
    "UnitsLoadFinishTimestampMonotonic": "units loaded (jobs start)",
}
SYSTEMD_SHOW = (
    f"systemctl show -p {','.join(SYSTEMD_MARKS)}; "
    "echo ExecMainStart=$(systemctl show -P ExecMainStartTimestampMonotonic vmtest-backdoor.service)"
)


def guest_marks(dmesg: str, show: str) -> dict[str, float]:
    marks = {name: float(m.group(1)) for name, pattern in MARKS.items() if (m := re.search(pattern, dmesg))}
    names = {**SYSTEMD_MARKS, "ExecMainStart": "vmtest-backdoor.service started"}
    for line in show.splitlines():
        key, _, value = line.partition("=")
        if key in names and value.strip().isdigit() and int(value):
            marks[names[key]] = int(value) / 1e6
    return marks


def one_boot(name: str, config: MachineConfig, store: ImageStore, profile: bool, save: Path | None) -> dict[str, Any]:
    load = load1()
    vm = Machine(name, config, store=store, snapshots=False)
    try:
        vm.start()
        vm.connect()
        vm.succeed("true")
        ready = time.monotonic() - vm.vm.launched_at
        vm.execute("systemctl is-system-running --wait", check_return=False, timeout=600)
        running = time.monotonic() - vm.vm.launched_at
        result: dict[str, Any] = {"load": load, "ready": ready, "running": running}
        if profile:
            dmesg = vm.succeed("dmesg")
            result["marks"] = guest_marks(dmesg, vm.succeed(SYSTEMD_SHOW))
            result["profile"] = [(cmd, vm.execute(cmd, check_return=False)[1]) for cmd in PROFILE_COMMANDS]
            result["failed"] = vm.execute("systemctl --failed --no-legend --no-pager", check_return=False)[1]
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"{name}-dmesg.txt").write_text(dmesg)
                (save / f"{name}-console.txt").write_text(vm.get_console_log())
                journal = vm.succeed("journalctl -b -o short-monotonic --no-pager")
                (save / f"{name}-journal.txt").write_text(journal)
        return result
    finally:
        vm.release()


def print_profile(cname: str, result: dict[str, Any]) -> None:
    print(f"\n--- {cname}: the guest's view of its last boot (guest clock) ---")
    for mark, t in sorted(result["marks"].items(), key=lambda kv: kv[1]):
        print(f"  {t:7.3f} s  {mark}")
    for cmd, out in result["profile"]:
        print(f"\n$ {cmd}\n{out.rstrip()}")
    print(f"\nfailed units: {result['failed'].strip() or 'none'}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--profile", action="store_true", help="print the guest's profile of the last boot")
    parser.add_argument("--save", type=Path, help="with --profile: keep its dmesg, console log and journal here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    store = ImageStore()
    rows: list[tuple[str, str, str]] = []
    for cname in args.configs.split(","):
        config = CONFIGS[cname]
        store.get(config)
        runs = []
        for i in range(args.boots):
            last = i == args.boots - 1
            save = args.save / cname if args.save else None
            r = one_boot(f"cold{i}", config, store, args.profile and last, save)
            runs.append(r)
            print(
                f"{cname} boot {i + 1}: first command {r['ready']:.2f} s, "
                f"is-system-running {r['running']:.2f} s (load {r['load']:.2f})",
                flush=True,
            )
        if args.profile:
            print_profile(cname, runs[-1])
        loads = f"load {min(r['load'] for r in runs):.2f}-{max(r['load'] for r in runs):.2f}"
        rows.append(
            (
                f"{cname}: launch -> first command, median of {len(runs)}",
                f"{statistics.median(r['ready'] for r in runs):.2f} s",
                f"<= 5 s ({loads})",
            )
        )
        rows.append(
            (
                f"{cname}: launch -> is-system-running, median of {len(runs)}",
                f"{statistics.median(r['running'] for r in runs):.2f} s",
                f"({loads})",
            )
        )
    print_table(rows, "cold boot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
