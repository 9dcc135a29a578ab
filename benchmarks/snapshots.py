#!/usr/bin/env python3
"""Booted snapshots against cold boots, side by side in one run: prints a table.

    .venv/bin/python benchmarks/snapshots.py [--runs 5] [--cold-cache] [--suite]

Measures, on this machine (a restore also split: when its state was loaded, when its fix-ups were done):
  - cold boot (QEMU launch -> first command answered), median of N, snapshots off;
  - restored start (QEMU launch -> first command answered), median of N, from one snapshot;
  - the first start of a new configuration (boot, save, restore) once;
  - the webserver example as a whole pytest process: warm images with snapshots off, the first run
    that saves the two snapshots, warm snapshots (median of N); with --cold-cache also from an empty
    cache (kernel, images, snapshots built);
  - with --suite: the whole test suite's wall time with snapshots on and off, as the README runs it
    (``./run tests``, with its xdist workers; two long runs, logs in benchmarks/suite-snapshots-*.log).
Targets from the issue are printed beside the numbers; nothing here fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

from vmtest import Machine, MachineConfig  # noqa: E402
from vmtest.image import ImageStore  # noqa: E402


class Phases(logging.Handler):
    """When a restore's own debug lines came: the saved state loaded (the guest runs), the per-run fix-ups done."""

    MARKS = {"snapshot loaded": "state loaded, guest running", "per-run fix-ups done": "per-run fix-ups done"}

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: dict[str, float] = {}  # what -> time.time()
        self.since_launch: dict[str, list[float]] = {what: [] for what in self.MARKS.values()}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for needle, what in self.MARKS.items():
            if needle in message:
                self.seen[what] = record.created

    def restored(self, launch_wall: float) -> None:
        """One restore ended: keep its marks as seconds since its launch (``launch_wall``: time.time())."""
        for what, at in self.seen.items():
            self.since_launch[what].append(at - launch_wall)
        self.seen.clear()


PHASES = Phases()


def first_command(store: ImageStore, config: MachineConfig, name: str, snapshots: bool) -> tuple[float, str]:
    """Seconds from QEMU's launch to the first command's answer, and the start path taken."""
    vm = Machine(name, config, store=store, snapshots=snapshots)
    try:
        PHASES.seen.clear()
        vm.connect()
        vm.succeed("true")
        took = time.monotonic() - vm.vm.launched_at
        if "restore" in vm.vm.start_path.name:
            PHASES.restored(time.time() - took)
        return took, vm.vm.start_path.name
    finally:
        vm.release()


def pytest_wall(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "log_cli=false", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed:\n{proc.stdout[-3000:]}")
    return time.monotonic() - start


class Rows(list[tuple[str, str, str]]):
    """The table's rows; each is also printed (to stderr) as it is measured."""

    def append(self, row: tuple[str, str, str]) -> None:
        print("  ".join(part for part in row if part), file=sys.stderr, flush=True)
        super().append(row)


def suite_wall(mode: str) -> tuple[float, str]:
    """The README's test command (``./run tests``: its xdist workers, the venv check first) with snapshots
    ``mode``; its log goes to ``benchmarks/suite-snapshots-<mode>.log``."""
    log = REPO / "benchmarks" / f"suite-snapshots-{mode}.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            ["bash", "./run", "tests", f"--vm-snapshots={mode}"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    took = time.monotonic() - start
    # With snapshots off the tests that assert restores and saves fail (expected): the time is still the
    # suite's; its summary line says how it ended.
    ended = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("=") and " in " in line]
    return took, (ended[-1].strip("= ") if ended else f"exit status {proc.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-cache", action="store_true", help="also the webserver example from an empty cache")
    parser.add_argument("--suite", action="store_true", help="also the whole suite, snapshots on and off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger().handlers[0].setLevel(logging.WARNING)  # vmtest's debug lines below go to PHASES only
    logging.getLogger("vmtest").setLevel(logging.DEBUG)
    logging.getLogger("vmtest").addHandler(PHASES)
    rows = Rows()
    store = ImageStore()
    config = MachineConfig(kernel_params=[f"vmtest.bench={uuid.uuid4().hex[:8]}"])  # a snapshot of its own
    store.get(config)

    cold = [first_command(store, config, f"cold{i}", False)[0] for i in range(args.runs)]
    rows.append((f"cold boot to first command, median of {args.runs}", f"{statistics.median(cold):.2f} s", "<= 5 s"))
    # one name: the machine's name is part of its identity, and so of its snapshot's key
    t, path = first_command(store, config, "bench", True)
    rows.append((f"first start of a configuration ({path})", f"{t:.2f} s", ""))
    restored = []
    for _ in range(args.runs):
        t, path = first_command(store, config, "bench", True)
        assert "restore" in path, path
        restored.append(t)
    med = statistics.median(restored)
    rows.append((f"restored start to first command, median of {args.runs}", f"{med:.2f} s", "<= 0.5 s"))
    for what, times in PHASES.since_launch.items():
        if times:
            rows.append((f"  of which: {what}, after (median)", f"{statistics.median(times):.2f} s", ""))
    rows.append(("restore vs cold boot", f"{statistics.median(cold) / med:.1f}x faster", ""))

    example = str(REPO / "examples" / "test_webserver.py")
    if args.cold_cache:
        with tempfile.TemporaryDirectory(prefix="vmtest-bench-cache-") as empty:
            t = pytest_wall([example], {"VMTEST_CACHE_DIR": empty})
        rows.append(("webserver example, empty cache (kernel, images, snapshots)", f"{t:.1f} s", ""))
    off = [pytest_wall([example, "--vm-snapshots=off"]) for _ in range(max(1, args.runs // 2))]
    rows.append(("webserver example, warm images, snapshots off", f"{statistics.median(off):.1f} s", ""))
    pytest_wall([example])  # makes the two snapshots if they are missing
    warm = [pytest_wall([example]) for _ in range(args.runs)]
    rows.append(
        (f"webserver example, warm snapshots, median of {args.runs}", f"{statistics.median(warm):.1f} s", "<= 8 s")
    )
    if args.suite:
        for mode in ("off", "on"):
            t, ended = suite_wall(mode)
            rows.append(
                (
                    f"whole suite (./run tests), snapshots {mode}",
                    f"{t / 60:.1f} min",
                    "<= 10 min" if mode == "on" else "",
                )
            )
            rows.append((f"  ({ended})", "", ""))
    print_table(rows, "booted snapshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
