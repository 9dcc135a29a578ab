"""Which booted snapshot each test's machine used, kept in the cache for ``vmtest cache export``.

A snapshot's key is made at launch from the machine's whole command line, its
network and the guest's identity: an exporter cannot tell from a snapshot's
meta (image and machine name) whether the selected tests would restore it or
whether it is an older one of the same machine (another vmtest, another
config). So every test records, per machine, the snapshot its launch restored
or saved (``"<test id>::<node>"`` -> key, :meth:`vmtest.core.cache.Cache.
record_snapshot_users`), and the exporter takes those.
"""

from __future__ import annotations

import pytest

from vmtest.core.cache import Cache
from vmtest.net.driver import Driver
from vmtest.vm.restore import used_snapshot

USED_KEY = pytest.StashKey[dict[str, str]]()


def note(item: pytest.Item, drivers: list[Driver]) -> None:
    """Remember the snapshot each machine of ``drivers`` (the test ``item``'s) restored or saved."""
    used = item.config.stash.setdefault(USED_KEY, {})
    for driver in drivers:
        for name, machine in list(driver.machines.items()):
            key = used_snapshot(machine.vm.start_path)
            if key is not None:
                used[f"{item.nodeid}::{name}"] = key


def write(config: pytest.Config, cache: Cache) -> None:
    """Add what this process's tests used to the cache's record (best effort: a read-only cache keeps none)."""
    used = config.stash.get(USED_KEY, {})
    try:
        cache.record_snapshot_users(used)
    except OSError:
        pass
