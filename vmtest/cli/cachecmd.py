"""``vmtest cache key / export / import``: the image cache of a test selection, for CI.

``key`` prints one hash of every image the selected tests need (for a CI
cache key), ``export`` writes those entries (images, their kernel, the booted
snapshots made on them) into one archive, ``import`` installs an archive's
entries into the local cache, verified, one complete entry at a time.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from vmtest.config.settings import Settings
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


def selection(args: argparse.Namespace) -> list[ImageNeed]:
    """The images the tests selected by ``args`` need (pytest collection; nothing is built)."""
    from vmtest.cli.collect import collect_configs

    configs = collect_configs(args.paths, shlex.split(args.pytest_args))
    if not configs:
        raise ConfigError(
            "PATHS",
            " ".join(args.paths) or "(pytest's testpaths)",
            "the collected tests use no vmtest machines (no @pytest.mark.vmtest(nodes=...))",
            "name the test files or directories that hold the VM tests",
        )
    return needed_images(configs, kernel_mod.resolve(LOG))


def describe(needs: list[ImageNeed]) -> None:
    """One line per image on stderr (stdout holds only the key)."""
    for need in needs:
        packages = ", ".join(need.config.packages) or "base system"
        print(f"image {need.key}: {need.config.suite}: {packages} ({len(need.users)} user(s))", file=sys.stderr)


def cmd_cache_key(args: argparse.Namespace, settings: Settings) -> int:
    needs = selection(args)
    if args.list:
        describe(needs)
    print(selection_key(n.key for n in needs))
    return 0


def output_path(value: str) -> Path:
    return Path(value).expanduser().absolute()
