#!/usr/bin/env python3
"""Image space: what the images of a test selection take in a fresh cache, and a one-package rebuild.

    .venv/bin/python benchmarks/imagespace.py [--cache DIR] [--keep] [PATHS...]

Collects the machine configurations of PATHS (default: examples/ and
tests/integration/, as ``vmtest cache key`` does), builds every image they
need into an empty cache (DIR, default a temporary directory; the .deb files
come from your own cache, so nothing is downloaded twice), and prints the
space each kind of entry takes (allocated blocks, as ``du``), then the time
to build an image whose package list differs from a cached one by one
package. Run it on two trees (``PYTHONPATH=<other checkout>``) to compare
before and after; nothing here fails.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from table import print_table  # noqa: E402

from vmtest import MachineConfig  # noqa: E402
from vmtest.cli.collect import collect_configs  # noqa: E402
from vmtest.core.cache import disk_usage  # noqa: E402
from vmtest.image import kernel as kernel_mod  # noqa: E402
from vmtest.image.selection import needed_images  # noqa: E402
from vmtest.image.store import ImageStore  # noqa: E402

MIB = 1 << 20


def mib(path: Path) -> float:
    return disk_usage(path) / MIB if path.exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("paths", nargs="*", default=["examples", "tests/integration"])
    parser.add_argument("--cache", type=Path, help="build into this (empty) cache directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logger = logging.getLogger("imagespace")

    configs = collect_configs(args.paths)
    spec = kernel_mod.resolve(logger)
    needs = needed_images(configs, spec)
    root = args.cache or Path(tempfile.mkdtemp(prefix="vmtest-imagespace-", dir="/var/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    own_debs = ImageStore().cache.debs
    if own_debs.is_dir() and not (root / "debs").exists():
        (root / "debs").symlink_to(own_debs)  # reuse the downloaded packages
    store = ImageStore(cache_dir=root)
    try:
        started = time.monotonic()
        for i, need in enumerate(needs, 1):
            label = ", ".join(need.config.packages) or "base system"
            print(f"[{i}/{len(needs)}] {need.key[:12]} ({label}; {len(need.users)} user(s))", flush=True)
            store.get(need.config)
        build_all = time.monotonic() - started
        images, kernels, bootdisks = mib(root / "images"), mib(root / "kernels"), mib(root / "bootdisks")
        layers = mib(root / "layers")  # build inputs only (a base system per suite and option set)
        per_image = sorted(mib(p) for p in (root / "images").iterdir()) if (root / "images").is_dir() else []

        base = MachineConfig(packages=["hello"])
        store.get(base)
        changed = MachineConfig(packages=["hello", "jq"])
        started = time.monotonic()
        store.get(changed)
        rebuild = time.monotonic() - started
    finally:
        if args.cache is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif args.cache is None:
            print(f"cache kept: {root}")

    total = images + kernels + bootdisks + layers
    rows = [
        ("distinct images of the selection", f"{len(needs)}", ""),
        ("images/ (all of them)", f"{images:.0f} MiB", ""),
        ("one image: smallest / median / largest", _spread(per_image), ""),
        ("kernels/ (kernel, initrd, modules)", f"{kernels:.0f} MiB", ""),
        ("bootdisks/", f"{bootdisks:.0f} MiB", ""),
        ("layers/ (base layers images are built on)", f"{layers:.0f} MiB", ""),
        ("total", f"{total:.0f} MiB", "<= 1/3 of before"),
        ("building them all (warm .deb cache)", f"{build_all:.0f} s", ""),
        ("image with one package more than a cached one", f"{rebuild:.1f} s", "seconds, not 25 s"),
    ]
    print_table(rows, f"image space of {' '.join(args.paths)}")


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{values[0]:.0f}/{values[len(values) // 2]:.0f}/{values[-1]:.0f} MiB"


if __name__ == "__main__":
    main()
