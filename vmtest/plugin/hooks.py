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
failure reports in :mod:`vmtest.plugin.report`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from vmtest.plugin import fixtures
from vmtest.plugin.fixtures import DRIVERS_KEY, output_dir
from vmtest.plugin.nodes import collected_marks, register_nodes
from vmtest.plugin.report import collect


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmtest", "virtual machine tests")
    group.addoption("--vm-accel", choices=["auto", "kvm", "tcg"], default=None,
                    help="QEMU accelerator (default: $VMTEST_ACCEL or auto = KVM if it is proven to work)")
    group.addoption("--vm-cache-dir", default=None,
                    help="image cache directory (default: $VMTEST_CACHE_DIR or ~/.cache/vmtest)")
    group.addoption("--vm-output-dir", default=None,
                    help="where failed tests leave console logs, screenshots and journals "
                         "(default: $VMTEST_OUTPUT_DIR or ./vmtest-output)")
    group.addoption("--vm-keep-state", action="store_true", default=None,
                    help="keep each test's machine state (disk overlays) in <output dir>/state/ and reuse it "
                         "in the next run (default: $VMTEST_KEEP_STATE=1, else a fresh state per test)")
    group.addoption("--vm-rebuild", action="store_true", default=False,
                    help="rebuild every image this session uses, once, even if cached")
    group.addoption("--vm-global-timeout", type=float, default=None,
                    help="kill the machines of a test still running after SECONDS "
                         "(default: $VMTEST_GLOBAL_TIMEOUT or 3600)")
    for key, (option, ini, env) in SETTINGS.items():
        parser.addini(ini, f"like {option} (environment: {env}; the command line wins, then the environment)",
                      type="bool" if key in _FLAGS else "string", default=None)


# Each setting: command-line option, ini key, environment variable. Precedence: command line, then
# environment, then ini file (pytest.ini / pyproject [tool.pytest.ini_options] / tox.ini), then default.
SETTINGS = {
    "accel": ("--vm-accel", "vm_accel", "VMTEST_ACCEL"),
    "cache_dir": ("--vm-cache-dir", "vm_cache_dir", "VMTEST_CACHE_DIR"),
    "output_dir": ("--vm-output-dir", "vm_output_dir", "VMTEST_OUTPUT_DIR"),
    "keep_state": ("--vm-keep-state", "vm_keep_state", "VMTEST_KEEP_STATE"),
    "rebuild": ("--vm-rebuild", "vm_rebuild", "VMTEST_REBUILD"),
    "global_timeout": ("--vm-global-timeout", "vm_global_timeout", "VMTEST_GLOBAL_TIMEOUT"),
}
_FLAGS = ("keep_state", "rebuild")


def setting(config: pytest.Config, key: str, default: Any = None) -> Any:
    """The value of one vmtest setting (see :data:`SETTINGS` for the precedence)."""
    option, ini, env = SETTINGS[key]
    value = config.getoption(option)
    if value in (None, False):
        value = os.environ.get(env) or config.getini(ini) or None
        if value is not None and key in _FLAGS:
            value = str(value).strip().lower() in ("1", "true", "yes", "on")
    if value is None:
        return default
    if key == "accel" and value not in ("auto", "kvm", "tcg"):
        raise pytest.UsageError(f"vmtest: accelerator {value!r} (from {option}/{ini}/{env}) must be auto, kvm or tcg")
    if key == "global_timeout":
        try:
            value = float(value)
        except ValueError:
            raise pytest.UsageError(f"vmtest: {ini}={value!r} is not a number of seconds") from None
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(fixtures, "vmtest-fixtures")
    config.addinivalue_line("markers", "integration: boots real QEMU guests (slow)")
    config.addinivalue_line(
        "markers",
        "vmtest(nodes, scope='function'): run the test against QEMU machines built from "
        "nodes={name: MachineConfig}; each name becomes a test argument holding its Machine",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """Before a test function is collected, make its vmtest node names fixtures (see vmtest.plugin.nodes)."""
    if callable(obj) and name.startswith("test"):
        register_nodes(collector.config, collected_marks(collector, obj))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
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
