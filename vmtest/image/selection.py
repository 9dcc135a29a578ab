"""The images a set of tests needs, and one key for all of them (``vmtest cache key``).

Pure: an image's key is computed from its :class:`MachineConfig` and the
resolved kernel package (:func:`vmtest.image.store.image_key`), nothing is
built. The selection's key hashes the sorted set of image keys, so it
changes exactly when one of those images would be rebuilt (a package list, a
file, a build command, the kernel, the guest files or the builder changed),
and not when tests are renamed, reordered, or share an image.

Booted snapshots are not in the key: a snapshot's key needs the machine's
network plan, the accelerator and the QEMU version of the host that runs the
tests (:mod:`vmtest.vm.snapshot`), and a snapshot is remade in seconds from
its image. ``vmtest cache export`` carries the snapshots made on the
exported images all the same (see :mod:`vmtest.core.archive`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmtest.config.machine import MachineConfig
from vmtest.image.kernel import KernelSpec
from vmtest.image.store import image_key

KEY_FORMAT = "vmtest-cache-key-1"


@dataclass
class ImageNeed:
    """One image and the tests (``nodeid::node``) that need it."""

    key: str
    config: MachineConfig
    users: list[str] = field(default_factory=list)


def needed_images(configs: Iterable[tuple[str, MachineConfig]], kernel: KernelSpec) -> list[ImageNeed]:
    """The distinct images of ``configs`` ((user, config) pairs), sorted by key (pure)."""
    needs: dict[str, ImageNeed] = {}
    for user, config in configs:
        if config.image is not None:  # a foreign image: vmtest builds nothing for it
            continue
        key = image_key(config, kernel)
        needs.setdefault(key, ImageNeed(key, config)).users.append(user)
    return [needs[k] for k in sorted(needs)]


def selection_key(image_keys: Iterable[str]) -> str:
    """One stable hash of a set of image keys: order and duplicates do not matter (pure)."""
    blob = "\n".join([KEY_FORMAT, *sorted(set(image_keys))]).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
