"""The globals of a NixOS test script, as fixtures of the same names.

A NixOS ``testScript`` calls ``start_all()``, ``subtest(...)``, ``join_all()``,
``retry(...)``, ``polling_condition``, ``serial_stdout_on()``/``serial_stdout_off()``
and ``create_machine(...)`` as globals. Here each is a fixture returning the
same-named method of the test's :class:`~vmtest.net.driver.Driver` (the ``vms``
fixture), so a script body pasted into a test that lists them as arguments runs
unchanged::

    @pytest.mark.vmtest(nodes={"machine": MachineConfig()})
    def test_login(machine, start_all, subtest):
        start_all()
        with subtest("the machine boots"):
            machine.wait_for_unit("multi-user.target")

Differences from NixOS: ``create_machine(name, config)`` takes a
:class:`~vmtest.MachineConfig` (NixOS takes a start command), and
``retry(fn, timeout=900)`` names its time limit ``timeout``.
"""

from __future__ import annotations

from typing import Any

import pytest

from vmtest.net.driver import Driver

#: Each global: its name (the fixture's and the Driver method's it returns) and the fixture's documentation.
GLOBALS: dict[str, str] = {
    "start_all": "NixOS's ``start_all()``: launch every machine of the test at once (``vms.start_all``).",
    "join_all": "NixOS's ``join_all()``: wait until every machine's shell answers (``vms.join_all``).",
    "subtest": "NixOS's ``with subtest(name):`` -- each subtest is reported as its own result (``vms.subtest``).",
    "retry": "NixOS's ``retry(fn, timeout=900)``: call ``fn(last_try)`` until it returns something truthy.",
    "polling_condition": "NixOS's ``@polling_condition`` (with or without arguments) (``vms.polling_condition``).",
    "serial_stdout_on": "NixOS's ``serial_stdout_on()``: log every machine's serial-console lines again.",
    "serial_stdout_off": "NixOS's ``serial_stdout_off()``: stop logging serial-console lines.",
    "create_machine": "NixOS's ``create_machine``: ``create_machine(name, config=None)`` adds a machine at run time "
    "(``vms.create_machine``).",
}

#: The fixture names this module defines (node fixtures never shadow them).
NAMES = frozenset(GLOBALS)


def _global(name: str, doc: str) -> Any:
    """The fixture ``name``: the test's Driver's method of that name."""

    def fixture(vms: Driver) -> Any:
        return getattr(vms, name)

    fixture.__name__ = fixture.__qualname__ = name
    fixture.__doc__ = doc
    return pytest.fixture(name=name)(fixture)


for _name, _doc in GLOBALS.items():
    globals()[_name] = _global(_name, _doc)
