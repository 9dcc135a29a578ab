"""The pytest plugin (entry point ``pytest11: vmtest``).

``@pytest.mark.vmtest(nodes={"server": cfg, "client": cfg}, scope="function")``
on a test (or its class or module) gives the test one argument per node name
holding its :class:`~vmtest.machine.Machine` (``machine`` too when there is a
single node) and the ``vms`` fixture (:class:`~vmtest.driver.Driver`) for the
whole network. Machines start lazily on first use, or all at once with
``vms.start_all()``. With ``scope="module"`` or ``"class"`` the machines boot
once and are shared by the tests of that module/class using the same nodes.

Node arguments are supplied by parametrizing the test with placeholders that
are swapped for the machines right before the call, so the test id gains a
``[vms]`` suffix (``pytest -k webserver`` still selects it).

``vm_factory`` creates stand-alone machines (no network) for a test.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.net.driver import Driver
from vmtest.core.errors import ConfigError
from vmtest.image import ImageStore
from vmtest.machine.machine import Machine
from vmtest.plugin.settings import add_pytest_options, settings

SCOPES = ("function", "class", "module")
DRIVER_KEY = pytest.StashKey[Driver]()


class _NodeRef:
    """Placeholder for a node's Machine until the test is called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<vmtest node {self.name}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: boots real QEMU guests (slow)")
    config.addinivalue_line(
        "markers",
        "vmtest(nodes, scope='function'): run the test against QEMU machines built from "
        "nodes={name: MachineConfig}; each name becomes a test argument holding its Machine",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    settings(session.config)  # a bad setting stops the run before any test (pytest.UsageError)


def _marker_args(marker: pytest.Mark) -> tuple[dict[str, MachineConfig], str]:
    nodes = marker.kwargs.get("nodes", marker.args[0] if marker.args else None)
    if not isinstance(nodes, dict) or not nodes:
        raise ConfigError("vmtest(nodes=...)", nodes, "expected a non-empty dict {name: MachineConfig}")
    scope = marker.kwargs.get("scope", "function")
    if scope not in SCOPES:
        raise ConfigError("vmtest(scope=...)", scope, "unknown scope", "use 'function', 'class' or 'module'")
    return nodes, scope


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("vmtest")
    if marker is None:
        return
    nodes, _ = _marker_args(marker)
    names = [n for n in nodes if n in metafunc.fixturenames]
    if len(nodes) == 1 and "machine" in metafunc.fixturenames and "machine" not in nodes:
        names.append("machine")
    if names:
        only = next(iter(nodes))
        refs = tuple(_NodeRef(only if n == "machine" and n not in nodes else n) for n in names)
        metafunc.parametrize(names, [refs], ids=["vms"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    funcargs = getattr(item, "funcargs", {})
    if any(isinstance(v, _NodeRef) for v in funcargs.values()):
        driver = item.stash[DRIVER_KEY]
        for key, value in list(funcargs.items()):
            if isinstance(value, _NodeRef):
                funcargs[key] = driver.machines[value.name]
    yield


def _output_dir(config: pytest.Config) -> Path:
    return settings(config).output_dir


def _test_output_dir(request: pytest.FixtureRequest) -> Path:
    """Where a test's screenshots and failure artifacts go: ``<output dir>/<test id>/``."""
    from vmtest.plugin.report import safe_name

    return _output_dir(request.config) / safe_name(request.node.nodeid)


@pytest.fixture(scope="session")
def vm_image_store(pytestconfig: pytest.Config) -> ImageStore:
    """The image store of this session (honours ``--vm-cache-dir``)."""
    run = settings(pytestconfig)
    return ImageStore(run.cache_dir, rebuild=run.rebuild)


class _Drivers:
    """Drivers shared by the tests of one scope (module or class), released at its end."""

    def __init__(self) -> None:
        self.by_nodes: dict[int, tuple[dict[str, MachineConfig], Driver]] = {}

    def get(self, nodes: dict[str, MachineConfig], make: Callable[[], Driver]) -> Driver:
        for known, driver in self.by_nodes.values():
            if known is nodes or known == nodes:
                return driver
        driver = make()
        self.by_nodes[id(nodes)] = (nodes, driver)
        return driver

    def release(self) -> None:
        for _, driver in self.by_nodes.values():
            driver.release()


@pytest.fixture(scope="module")
def _vmtest_module_drivers() -> Iterator[_Drivers]:
    drivers = _Drivers()
    yield drivers
    drivers.release()


@pytest.fixture(scope="class")
def _vmtest_class_drivers() -> Iterator[_Drivers]:
    drivers = _Drivers()
    yield drivers
    drivers.release()


@pytest.fixture(autouse=True)
def _vmtest_network(request: pytest.FixtureRequest, vm_image_store: ImageStore) -> Iterator[Driver | None]:
    marker = request.node.get_closest_marker("vmtest")
    if marker is None:
        yield None
        return
    nodes, scope = _marker_args(marker)
    run = settings(request.config)
    owner = request.node if scope == "function" else request.node.getparent(
        pytest.Module if scope == "module" else pytest.Class)
    state_root = None
    if run.keep_state:
        # Short, stable per test (unix socket paths must stay under 108 bytes).
        digest = hashlib.sha256(owner.nodeid.encode()).hexdigest()[:12]
        state_root = _output_dir(request.config) / "state" / digest
        state_root.mkdir(parents=True, exist_ok=True)
        (state_root / "TEST").write_text(owner.nodeid + "\n")

    def make() -> Driver:
        return Driver(nodes, vm_image_store, accel=run.accel, state_root=state_root)

    if scope == "function":
        driver = make()
    else:
        driver = request.getfixturevalue(f"_vmtest_{scope}_drivers").get(nodes, make)
    request.node.stash[DRIVER_KEY] = driver
    for machine in driver.machines.values():
        machine.output_dir = _test_output_dir(request)
    limit = run.global_timeout
    watchdog = threading.Timer(limit, driver.abort, args=(f"the global timeout of {limit:g}s expired",))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield driver
    finally:
        watchdog.cancel()
        if scope == "function":
            driver.release()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or DRIVER_KEY not in item.stash:
        return
    from vmtest.plugin.report import collect

    driver = item.stash[DRIVER_KEY]
    text = collect(driver, _output_dir(item.config), item.nodeid)
    if driver.aborted:
        text = f"vmtest: {driver.aborted}; its machines were killed\n\n" + text
    report.sections.append(("vmtest machines", text))
    # JUnit XML (pytest --junitxml) writes the item's user properties (from its teardown report).
    item.user_properties.append(("vmtest_report", text))


@pytest.fixture
def vms(_vmtest_network: Driver | None) -> Driver:
    """The test's network of machines (``@pytest.mark.vmtest(nodes=...)`` required)."""
    if _vmtest_network is None:
        raise ConfigError("vms", None, "this test has no @pytest.mark.vmtest(nodes={...}) marker")
    return _vmtest_network


@pytest.fixture
def vm_factory(request: pytest.FixtureRequest, pytestconfig: pytest.Config,
               vm_image_store: ImageStore) -> Iterator[Callable[..., Machine]]:
    """``vm_factory(name, config)`` -> a stand-alone :class:`Machine` (no network), released after the test."""
    machines: list[Machine] = []

    def make(name: str, config: MachineConfig | None = None, **kwargs: Any) -> Machine:
        kwargs.setdefault("output_dir", _test_output_dir(request))
        machine = Machine(name, config, store=vm_image_store, accel=settings(pytestconfig).accel, **kwargs)
        machines.append(machine)
        return machine

    yield make
    for machine in machines:
        machine.release()
