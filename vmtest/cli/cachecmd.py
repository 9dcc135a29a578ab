"""``vmtest cache key / export / import``: the image cache of a test selection, for CI.

``key`` prints one hash of every image the selected tests need (for a CI
cache key), ``export`` writes those entries (images, their kernel, the booted
snapshots the selected tests' machines used) into one archive, ``import`` installs an archive's
entries into the local cache, verified, one complete entry at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

from vmtest.config.settings import Settings
from vmtest.core.cache import Cache, disk_usage
from vmtest.core.errors import ConfigError
from vmtest.image import kernel as kernel_mod
from vmtest.image.selection import ImageNeed, needed_images, selection_key

LOG = logging.getLogger("vmtest.cache")


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths", nargs="*", metavar="PATHS", help="test files or directories, as for pytest (default: its testpaths)"
    )
    p.add_argument(
        "--pytest-args",
        default="",
        metavar="ARGS",
        help="more pytest arguments for the collection, one string (e.g. \"-m 'not slow'\")",
    )


def selection(args: argparse.Namespace, settings: Settings) -> list[ImageNeed]:
    """The images the tests selected by ``args`` need (pytest collection; nothing is built; the kernel as
    the cache's kept apt answer says, when apt's lists did not change)."""
    from vmtest.cli.collect import collect_configs

    configs = collect_configs(args.paths, shlex.split(args.pytest_args))
    if not configs:
        raise ConfigError(
            "PATHS",
            " ".join(args.paths) or "(pytest's testpaths)",
            "the collected tests use no vmtest machines (no @pytest.mark.vmtest(nodes=...))",
            "name the test files or directories that hold the VM tests",
        )
    return needed_images(configs, kernel_mod.resolve(LOG, Cache(settings.cache_dir).apt_answer("kernel")))


def describe(needs: list[ImageNeed]) -> None:
    """One line per image on stderr (stdout holds only the key)."""
    for need in needs:
        packages = ", ".join(need.config.packages) or "base system"
        print(f"image {need.key}: {need.config.suite}: {packages} ({len(need.users)} user(s))", file=sys.stderr)


def cmd_cache_key(args: argparse.Namespace, settings: Settings) -> int:
    needs = selection(args, settings)
    if args.list:
        describe(needs)
    print(selection_key(n.key for n in needs))
    return 0


def output_path(value: str) -> Path:
    return Path(value).expanduser().absolute()


def selected_entries(cache: Cache, needs: list[ImageNeed], snapshots: bool = True) -> list[tuple[str, str]]:
    """(kind, key) of the kernel(s) the images use, the images, and (with ``snapshots``) the booted
    snapshots the selected tests' machines used (:func:`used_snapshots`), in that order (an importer installs
    images before their snapshots)."""
    image_keys = [n.key for n in needs]
    kernels: list[str] = []
    for key in image_keys:
        path = cache.lookup("images", key)
        assert path is not None
        kernel_key = json.loads((path / "meta.json").read_text()).get("kernel_key")
        if kernel_key and kernel_key not in kernels:
            kernels.append(kernel_key)
    out = [("kernels", k) for k in kernels] + [("images", k) for k in image_keys]
    if snapshots:
        out += [("snapshots", key) for key in used_snapshots(cache, needs)]
    return out


def used_snapshots(cache: Cache, needs: list[ImageNeed]) -> list[str]:
    """The keys of the booted snapshots the selected tests' machines (``needs``' users) restored or saved in
    their last run on this cache (:mod:`vmtest.plugin.snapshotusers`). For a machine (an image and a node
    name) none of whose selected tests has such a record (no run recorded since): every snapshot of that
    name on that image, the older ones of other configurations or vmtest versions too."""
    records = cache.snapshot_users()
    machine_of = {user: (n.key, user.rsplit("::", 1)[-1]) for n in needs for user in n.users}
    recorded = {records[user] for user in machine_of if user in records}
    machines = set(machine_of.values())
    unrecorded = machines - {machine_of[user] for user in machine_of if user in records}
    out = []
    for entry in cache.entries():
        machine = (entry.meta.get("image_key"), entry.meta.get("machine"))
        if entry.kind == "snapshots" and (machine in unrecorded or (entry.key in recorded and machine in machines)):
            out.append(entry.key)
    return out


def cmd_cache_export(args: argparse.Namespace, settings: Settings) -> int:
    from vmtest.core.archive import write_archive
    from vmtest.image import ImageStore

    needs = selection(args, settings)
    store = ImageStore(settings.cache_dir, cache_url=settings.cache_url)
    missing = [n for n in needs if store.cache.lookup("images", n.key) is None]
    if missing and not args.build:
        listed = "; ".join(f"{n.key[:12]} ({', '.join(n.config.packages) or 'base system'})" for n in missing)
        raise ConfigError(
            "PATHS",
            " ".join(args.paths) or "(pytest's testpaths)",
            f"{len(missing)} image(s) the tests need are not in {store.cache.root}: {listed}",
            "add --build to build them first, or run the tests once",
        )
    for need in missing:
        store.get(need.config)
    per_entry = args.output.endswith("/") or Path(args.output).is_dir()
    entries = selected_entries(store.cache, needs, snapshots=not args.no_snapshots)
    start = time.monotonic()
    out = output_path(args.output)
    if per_entry:  # the remote-cache layout: DIR/KIND/KEY.tar.zst (xz without the zstd program)
        suffix = ".tar.zst" if shutil.which("zstd") else ".tar.xz"
        for kind, key in entries:
            (out / kind).mkdir(parents=True, exist_ok=True)
            write_archive(store.cache, [(kind, key)], out / kind / f"{key}{suffix}", LOG)
    else:
        write_archive(store.cache, entries, out, LOG)
    counts = {kind: sum(1 for k, _ in entries if k == kind) for kind in ("kernels", "images", "snapshots")}
    print(
        f"exported {counts['images']} image(s), {counts['kernels']} kernel(s), {counts['snapshots']} snapshot(s) "
        f"to {out} ({disk_usage(out) >> 20} MiB) in {time.monotonic() - start:.1f}s"
    )
    return 0


def local_qemu() -> str:
    from vmtest.config.machine import MachineConfig
    from vmtest.vm.snapshot import qemu_version

    return qemu_version(MachineConfig().virtualisation.qemu.binary)


def cmd_cache_import(args: argparse.Namespace, settings: Settings) -> int:
    from vmtest.core.archive import read_archive
    from vmtest.vm import snapshot

    cache = Cache(settings.cache_dir)
    path = Path(args.archive)
    if not path.is_file():
        raise ConfigError("ARCHIVE", args.archive, "no such file", "give the file 'vmtest cache export -o' wrote")
    accept, fixup = snapshot.import_policy(cache, local_qemu(), LOG)
    start = time.monotonic()
    outcomes = read_archive(cache, path, LOG, accept, fixup)
    for o in outcomes:
        print(
            f"{o.status:9} {o.kind}/{o.key}" if not o.status.startswith("skipped") else f"{o.status} ({o.kind}/{o.key})"
        )
    installed = sum(1 for o in outcomes if o.status == "installed")
    print(
        f"{installed} entr{'y' if installed == 1 else 'ies'} installed into {cache.root} "
        f"in {time.monotonic() - start:.1f}s"
    )
    return 0
