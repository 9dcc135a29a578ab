"""``--vm-interactive`` (what ``vmtest shell PATH::TEST`` runs): the test's machines and a Python REPL
instead of the test's body.

The REPL (ptpython when it is installed, else the standard :mod:`code` console) binds each node by
name, ``vms``, ``start_all``, ``join_all``, ``subtest``, ``retry`` and the test's other fixtures;
each machine has ``shell_interact()`` and ``console_interact()``. Leaving it (Ctrl-D, ``exit()``)
ends the test; its teardown releases every machine as after a test run. The global timeout does not
apply while the REPL is open.
"""

from __future__ import annotations

import code
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from vmtest.net.driver import Driver
from vmtest.plugin.fixtures import DRIVERS_KEY

BANNER = (
    "vmtest shell: {test}\n"
    "machines: {names} (not started yet: they boot on first use, or all at once with start_all())\n"
    "e.g. {first}.succeed('hostname'), {first}.shell_interact() (Ctrl-] returns), vms.machines; "
    "Ctrl-D or exit() leaves and releases them"
)


def check_selection(items: list[pytest.Item]) -> None:
    """``--vm-interactive`` is for exactly one test (a UsageError otherwise)."""
    if len(items) != 1:
        names = ", ".join(item.nodeid for item in items[:5]) + (" ..." if len(items) > 5 else "")
        raise pytest.UsageError(
            f"vmtest: --vm-interactive needs a selection of exactly one test, got {len(items)}"
            + (f" ({names})" if items else "")
            + "; name one as PATH::TEST (or narrow with -k)"
        )


def namespace(item: pytest.Item, driver: Driver) -> dict[str, Any]:
    """What the REPL binds: the test's fixtures, then every node, ``vms`` and the driver's globals."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    names = {k: v for k, v in funcargs.items() if not k.startswith("_")}
    names.update(driver.machines)
    names.update(
        vms=driver,
        start_all=driver.start_all,
        join_all=driver.join_all,
        subtest=driver.subtest,
        retry=driver.retry,
        polling_condition=driver.polling_condition,
    )
    return names


def repl(names: dict[str, Any], banner: str) -> None:
    """An interactive console over ``names`` until the user leaves it."""
    try:
        from ptpython.repl import embed  # type: ignore[import-not-found]
    except ImportError:
        embed = None
    try:
        if embed is not None:
            print(banner)
            embed(globals=names, locals=names)
        else:
            code.interact(banner=banner, local=names, exitmsg="vmtest shell: releasing the machines")
    except SystemExit:  # exit() / quit() in the console
        pass


def run(item: pytest.Item) -> bool:
    """Open the REPL for ``item`` (its body does not run); False when it is not a VM test."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    driver = funcargs.get("_vmtest_network")
    if not isinstance(driver, Driver):
        raise pytest.UsageError(f"vmtest: --vm-interactive: {item.nodeid} has no @pytest.mark.vmtest(nodes=...)")
    watch = item.stash.get(DRIVERS_KEY, None)
    if watch is not None:
        watch.cancel()  # the global timeout is for unattended runs, not for a person at a prompt
    names = sorted(driver.machines)
    banner = BANNER.format(test=item.nodeid, names=", ".join(names), first=names[0] if names else "machine")
    with terminal(item.config):
        repl(namespace(item, driver), banner)
    return True


@contextmanager
def terminal(config: pytest.Config) -> Iterator[None]:
    """pytest's capture suspended, stdin included (as for its debugger), while inside."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        yield
        return
    capture.suspend_global_capture(in_=True)
    try:
        yield
    finally:
        capture.resume_global_capture()
