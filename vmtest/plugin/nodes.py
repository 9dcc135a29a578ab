"""Node names as real fixtures.

For ``@pytest.mark.vmtest(nodes={"server": ..., "client": ...})`` the test
asks for ``server`` and ``client`` by name. Each node name seen during
collection becomes a fixture of its own (registered once, globally, before
the test function is collected, so that pytest resolves it like any other
fixture and ``pytest --fixtures`` lists it). The fixture returns the
test's machine of that name; a test that asks for it without a marker
naming it gets a ConfigError saying so. A fixture of the same name that
the user defines in a conftest or module wins, as pytest's overriding rules
say.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

from vmtest.core.errors import ConfigError
from vmtest.machine.machine import Machine
from vmtest.net.driver import MACHINE_NAME, python_name
from vmtest.plugin.marker import node_names
from vmtest.plugin.nixos_globals import NAMES as NIXOS_GLOBALS

# Fixture names of the plugin itself, never shadowed by a node fixture.
RESERVED = frozenset({"vms", "machine", "vm_factory", "vm_image_store", "request"}) | NIXOS_GLOBALS
REGISTERED = pytest.StashKey[set[str]]()


def _make_fixture(name: str) -> Callable[..., Machine]:
    """The fixture of node ``name``; its fixture name is the node's Python name (``server-lazy`` ->
    ``server_lazy``, as NixOS names it in a test script), the machine keeps the real name."""
    fixture_name = python_name(name)

    def node(request: pytest.FixtureRequest) -> Machine:
        driver = request.getfixturevalue("_vmtest_network")
        if driver is None or name not in driver.machines:
            raise ConfigError(
                f"fixture {name!r}",
                None,
                "this test asks for a vmtest node of that name, but its vmtest marker declares no such node",
                "add it to @pytest.mark.vmtest(nodes={...}) or rename the argument",
            )
        machine: Machine = driver.machines[name]
        return machine

    node.__name__ = f"vmtest_node_{fixture_name}"
    node.__doc__ = f"The Machine of the vmtest node {name!r} (declared in a @pytest.mark.vmtest(nodes=...) marker)."
    return pytest.fixture(name=fixture_name)(node)


def _holder(name: str) -> types.ModuleType:
    """A plugin module carrying one node fixture (pytest parses fixtures from registered plugins)."""
    module = types.ModuleType(f"vmtest_node_{name}", f"vmtest node fixture {name!r}")
    setattr(module, f"vmtest_node_{python_name(name)}", _make_fixture(name))
    return module


def register_nodes(config: pytest.Config, marks: list[pytest.Mark]) -> None:
    """Register a fixture for every node name of the closest vmtest mark that has none yet."""
    registered = config.stash.setdefault(REGISTERED, set())
    for name in node_names(marks):
        # A bad name is skipped here; the Driver reports it when the test runs.
        if name in registered or python_name(name) in RESERVED or not MACHINE_NAME.fullmatch(name):
            continue
        registered.add(name)
        config.pluginmanager.register(_holder(name), name=f"vmtest-node-{name}")


def collected_marks(collector: pytest.Collector, obj: Any) -> list[pytest.Mark]:
    """The marks of function ``obj`` about to be collected, closest first (function, class, module)."""
    own = getattr(obj, "pytestmark", [])
    own = own if isinstance(own, list) else [own]
    return [*own, *collector.iter_markers()]
