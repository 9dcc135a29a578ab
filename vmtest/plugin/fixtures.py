"""The plugin's fixtures: ``vms``, the node fixtures' source ``_vmtest_network``, ``machine``, ``vm_factory``.

Every machine a test gets, from its marker or from ``vm_factory``, belongs
to a :class:`~vmtest.net.driver.Driver` registered in the test item's stash:
the failure report and the global-timeout watchdog see all of them.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError
from vmtest.core.threads import signals_to_main
from vmtest.image import ImageStore
from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver
from vmtest.plugin.marker import global_timeout as marker_global_timeout
from vmtest.plugin.marker import marker_args, settings_only
from vmtest.plugin.marker import snapshots as marker_snapshots
from vmtest.plugin.settings import settings


def output_dir(config: pytest.Config) -> Path:
    return settings(config).output_dir


def test_output_dir(request: pytest.FixtureRequest) -> Path:
    """Where a test's screenshots and failure artifacts go: ``<output dir>/<test id>/``."""
    from vmtest.plugin.report import safe_name

    return output_dir(request.config) / safe_name(request.node.nodeid)


class Watch:
    """The drivers of one test and its global-timeout watchdog (armed when the first driver joins)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.drivers: list[Driver] = []
        self._timer: threading.Timer | None = None

    def add(self, driver: Driver) -> None:
        if driver in self.drivers:
            return
        self.drivers.append(driver)
        if self._timer is None:
            self._timer = threading.Timer(self.limit, self._expire)
            self._timer.daemon = True
            with signals_to_main():
                self._timer.start()

    def _expire(self) -> None:
        for driver in self.drivers:
            driver.abort(f"the global timeout of {self.limit:g}s expired")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


DRIVERS_KEY = pytest.StashKey[Watch]()


def _watch(request: pytest.FixtureRequest) -> Watch:
    stash: pytest.Stash = request.node.stash  # FixtureRequest.node is typed Any
    if DRIVERS_KEY not in stash:
        limit = marker_global_timeout(request.node.get_closest_marker("vmtest"))
        stash[DRIVERS_KEY] = Watch(limit if limit is not None else settings(request.config).global_timeout)
    return stash[DRIVERS_KEY]


@pytest.fixture(autouse=True)
def _vmtest_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    watch = request.node.stash.get(DRIVERS_KEY, None)
    if watch is not None:
        watch.cancel()


STORE_KEY = pytest.StashKey[ImageStore]()


@pytest.fixture(scope="session")
def vm_image_store(pytestconfig: pytest.Config) -> ImageStore:
    """The image store of this session (honours ``--vm-cache-dir``, ``--vm-cache-url`` and ``--vm-rebuild``)."""
    run = settings(pytestconfig)
    store = ImageStore(run.cache_dir, rebuild=run.rebuild, cache_url=run.cache_url)
    pytestconfig.stash[STORE_KEY] = store  # the session's summary line (vmtest.plugin.hooks)
    return store


# Drivers shared by the tests of a module or class (--vm-keep-on-failure keeps only a test's own).
SHARED: weakref.WeakSet[Driver] = weakref.WeakSet()


class _Drivers:
    """Drivers shared by the tests of one scope (module or class), released at its end."""

    def __init__(self) -> None:
        self.by_nodes: list[tuple[dict[str, MachineConfig], Driver]] = []

    def get(self, nodes: dict[str, MachineConfig], make: Callable[[], Driver]) -> Driver:
        for known, driver in self.by_nodes:
            if known is nodes or known == nodes:
                return driver
        driver = make()
        SHARED.add(driver)
        self.by_nodes.append((nodes, driver))
        return driver

    def release(self) -> None:
        for _, driver in self.by_nodes:
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


def _kept_root(request: pytest.FixtureRequest, owner: pytest.Item | pytest.Collector) -> Path:
    """A stable directory per test (or module/class) that survives the run (not made here): the state root
    of --vm-keep-state, and where a machine keeps what outlives a run without it (efi.keep_variables)."""
    # Short and stable (unix socket paths must stay under 108 bytes).
    digest = hashlib.sha256(owner.nodeid.encode()).hexdigest()[:12]
    return output_dir(request.config) / "state" / digest


def _state_root(request: pytest.FixtureRequest, owner: pytest.Item | pytest.Collector) -> Path | None:
    """With --vm-keep-state: a stable directory per test (or module/class) that survives the run."""
    if not settings(request.config).keep_state:
        return None
    root = _kept_root(request, owner)
    root.mkdir(parents=True, exist_ok=True)
    (root / "TEST").write_text(owner.nodeid + "\n")
    return root


def _subtests(request: pytest.FixtureRequest) -> Callable[[], object]:
    """The test's ``subtests`` fixture (pytest 9), asked for when the first subtest begins; None
    (subtests are plain log sections) on an older pytest."""

    def get() -> object:
        try:
            return request.getfixturevalue("subtests")
        except pytest.FixtureLookupError:
            return None

    return get


@pytest.fixture(autouse=True)
def _vmtest_network(request: pytest.FixtureRequest, vm_image_store: ImageStore) -> Iterator[Driver | None]:
    marker = request.node.get_closest_marker("vmtest")
    if marker is None or settings_only(marker):
        yield None  # no marker, or one with settings alone (a vm_factory test's global_timeout)
        return
    nodes, scope = marker_args(marker)
    accel = settings(request.config).accel
    owner = (
        request.node
        if scope == "function"
        else request.node.getparent(pytest.Module if scope == "module" else pytest.Class)
    )
    assert owner is not None

    use_snapshots = settings(request.config).snapshots == "on" and marker_snapshots(marker)

    def make() -> Driver:
        return Driver(
            nodes,
            vm_image_store,
            accel=accel,
            state_root=_state_root(request, owner),
            snapshots=use_snapshots,
            kept_root=_kept_root(request, owner),
        )

    if scope == "function":
        driver = make()
    else:
        driver = request.getfixturevalue(f"_vmtest_{scope}_drivers").get(nodes, make)
    driver.set_output_dir(test_output_dir(request))
    driver.subtests = _subtests(request)
    _watch(request).add(driver)
    try:
        yield driver
    finally:
        driver.subtests = None
        if scope == "function":
            driver.release()


@pytest.fixture
def vms(_vmtest_network: Driver | None) -> Driver:
    """The test's network of machines (needs a ``@pytest.mark.vmtest(nodes=...)`` marker)."""
    if _vmtest_network is None:
        raise ConfigError("vms", None, "this test has no @pytest.mark.vmtest(nodes={...}) marker")
    return _vmtest_network


@pytest.fixture
def machine(_vmtest_network: Driver | None) -> Machine:
    """The only machine of a single-node test (or the node named ``machine``)."""
    if _vmtest_network is None:
        raise ConfigError("machine", None, "this test has no @pytest.mark.vmtest(nodes={...}) marker")
    machines = _vmtest_network.machines
    if "machine" in machines:
        return machines["machine"]
    if len(machines) != 1:
        raise ConfigError(
            "machine",
            sorted(machines),
            "the fixture 'machine' is for tests with a single node",
            "ask for the nodes by name",
        )
    return next(iter(machines.values()))


@pytest.fixture
def vm_factory(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, vm_image_store: ImageStore
) -> Iterator[Callable[..., Machine]]:
    """``vm_factory(name, config, snapshots=True)`` -> a stand-alone :class:`~vmtest.Machine` (no network),
    released after the test (``snapshots=False``, here or in the test's vmtest marker: it always boots for
    real). Its machines get the failure report and the global timeout like the marker's."""
    drivers: list[Driver] = []
    marker = request.node.get_closest_marker("vmtest")  # snapshots=False there: every machine boots for real
    enabled = settings(pytestconfig).snapshots == "on" and (marker is None or marker_snapshots(marker))

    def make(name: str, config: MachineConfig | None = None, snapshots: bool = True) -> Machine:
        if not drivers:
            kept = _state_root(request, request.node)
            driver = Driver(
                {},
                vm_image_store,
                accel=settings(pytestconfig).accel,
                state_root=kept / "factory" if kept is not None else None,
                snapshots=enabled,
                kept_root=_kept_root(request, request.node) / "factory",
            )
            driver.set_output_dir(test_output_dir(request))
            _watch(request).add(driver)
            drivers.append(driver)
        machine = drivers[0].create_machine(name, config, snapshots=enabled and snapshots)
        drivers[0].subtests = _subtests(request)
        return machine

    yield make
    for driver in drivers:
        driver.release()
