"""The pytest plugin (entry point ``pytest11: vmtest`` -> this module).

``@pytest.mark.vmtest(nodes={"server": cfg, "client": cfg}, scope="function")``
on a test (or its class or module) gives the test one fixture per node name
holding its :class:`~vmtest.machine.machine.Machine` (``machine`` too when
there is a single node) and the ``vms`` fixture
(:class:`~vmtest.net.driver.Driver`) for the whole network. Machines start
lazily on first use, or all at once with ``vms.start_all()``. With
``scope="module"`` or ``"class"`` the machines boot once and are shared by
the tests of that module/class using the same nodes. ``vm_factory``
creates stand-alone machines (no network) for a test.

This module holds the hooks and the settings; the fixtures live in
:mod:`vmtest.plugin.fixtures`, node fixtures in :mod:`vmtest.plugin.nodes`,
the NixOS script globals (``start_all``, ``subtest``, ...) in
:mod:`vmtest.plugin.nixos_globals`, failure reports in :mod:`vmtest.plugin.report`.
"""

from __future__ import annotations

from collections.abc import Generator

import pluggy
import pytest

from vmtest.core.cache import Cache
from vmtest.core.log import get_logger
from vmtest.core.statedirs import sweep_leftovers
from vmtest.plugin import fixtures, nixos_globals, split
from vmtest.plugin.fixtures import DRIVERS_KEY, STORE_KEY, output_dir
from vmtest.plugin.frames import hide_vmtest_frames
from vmtest.plugin.nodes import collected_marks, register_nodes
from vmtest.plugin.report import collect
from vmtest.plugin.settings import add_pytest_options, settings
from vmtest.plugin.subtests import split_junit_subtests


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(fixtures, "vmtest-fixtures")
    config.pluginmanager.register(nixos_globals, "vmtest-nixos-globals")
    config.pluginmanager.register(split, "vmtest-split")
    config.addinivalue_line("markers", "integration: boots real QEMU guests (slow)")
    config.addinivalue_line(
        "markers",
        "vmtest(nodes, scope='function'): run the test against QEMU machines built from "
        "nodes={name: MachineConfig}; each name becomes a test argument holding its Machine",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    run = settings(session.config)  # a bad setting stops the run before any test (pytest.UsageError)
    split_junit_subtests(session.config)
    sweep_leftovers(Cache(run.cache_dir), get_logger("leftovers"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line saying where this session's images came from (cache, remote cache, built)."""
    store = config.stash.get(STORE_KEY, None)
    if store is not None and store.origins:
        terminalreporter.write_line(f"vmtest: {store.summary()}")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """Before a test function is collected, make its vmtest node names fixtures (see vmtest.plugin.nodes)."""
    if callable(obj) and name.startswith("test"):
        register_nodes(collector.config, collected_marks(collector, obj))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    hide_vmtest_frames(call.excinfo)  # a vmtest error's report starts at the user's line
    outcome = yield
    report = outcome.get_result()
    watch = item.stash.get(DRIVERS_KEY, None)
    if report.when != "call" or not report.failed or watch is None or not watch.drivers:
        return
    text = collect(watch.drivers, output_dir(item.config), item.nodeid)
    aborted = [d.aborted for d in watch.drivers if d.aborted]
    if aborted:
        text = f"vmtest: {aborted[0]}; its machines were killed\n\n" + text
    report.sections.append(("vmtest machines", text))
    # JUnit XML (pytest --junitxml) writes the item's user properties (from its teardown report).
    item.user_properties.append(("vmtest_report", text))
