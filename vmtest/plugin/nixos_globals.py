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

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver

#: The fixture names this module defines (node fixtures never shadow them).
NAMES = frozenset(
    {
        "start_all",
        "subtest",
        "join_all",
        "retry",
        "polling_condition",
        "serial_stdout_on",
        "serial_stdout_off",
        "create_machine",
    }
)


@pytest.fixture
def start_all(vms: Driver) -> Callable[[], None]:
    """NixOS's ``start_all()``: launch every machine of the test at once (``vms.start_all``)."""
    return vms.start_all


@pytest.fixture
def join_all(vms: Driver) -> Callable[[], None]:
    """NixOS's ``join_all()``: wait until every machine's shell answers (``vms.join_all``)."""
    return vms.join_all


@pytest.fixture
def subtest(vms: Driver) -> Callable[[str], AbstractContextManager[None]]:
    """NixOS's ``with subtest(name):`` -- each subtest is reported as its own result (``vms.subtest``)."""
    return vms.subtest


@pytest.fixture
def retry(vms: Driver) -> Callable[..., Any]:
    """NixOS's ``retry(fn, timeout=900)``: call ``fn(last_try)`` until it returns something truthy."""
    return vms.retry


@pytest.fixture
def polling_condition(vms: Driver) -> Callable[..., Any]:
    """NixOS's ``@polling_condition`` (with or without arguments) (``vms.polling_condition``)."""
    return vms.polling_condition


@pytest.fixture
def serial_stdout_on(vms: Driver) -> Callable[[], None]:
    """NixOS's ``serial_stdout_on()``: log every machine's serial-console lines again."""
    return vms.serial_stdout_on


@pytest.fixture
def serial_stdout_off(vms: Driver) -> Callable[[], None]:
    """NixOS's ``serial_stdout_off()``: stop logging serial-console lines."""
    return vms.serial_stdout_off


@pytest.fixture
def create_machine(vms: Driver) -> Callable[..., Machine]:
    """NixOS's ``create_machine``: ``create_machine(name, config=None)`` adds a machine at run time
    (``vms.create_machine``)."""
    return vms.create_machine
