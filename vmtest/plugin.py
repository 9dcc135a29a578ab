"""The pytest plugin (entry point ``pytest11: vmtest``).

This first part registers the command-line options and a ``vm_factory``
fixture that creates machines and guarantees their release at the end of the
test. The ``vmtest`` marker with per-node fixtures and VLANs builds on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from .config import MachineConfig
from .image import ImageStore
from .machine import Machine


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmtest", "virtual machine tests")
    group.addoption("--vm-accel", choices=["auto", "kvm", "tcg"], default=None,
                    help="QEMU accelerator (default: $VMTEST_ACCEL or auto = KVM if it is proven to work)")
    group.addoption("--vm-cache-dir", default=None,
                    help="image cache directory (default: $VMTEST_CACHE_DIR or ~/.cache/vmtest)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: boots real QEMU guests (slow)")


@pytest.fixture(scope="session")
def vm_image_store(pytestconfig: pytest.Config) -> ImageStore:
    """The image store of this session (honours ``--vm-cache-dir``)."""
    return ImageStore(pytestconfig.getoption("--vm-cache-dir"))


@pytest.fixture
def vm_factory(pytestconfig: pytest.Config, vm_image_store: ImageStore) -> Iterator[Callable[..., Machine]]:
    """``vm_factory(name, config)`` -> a started-on-demand :class:`Machine`, released after the test."""
    machines: list[Machine] = []

    def make(name: str, config: MachineConfig | None = None, **kwargs: object) -> Machine:
        machine = Machine(name, config, store=vm_image_store, accel=pytestconfig.getoption("--vm-accel"), **kwargs)
        machines.append(machine)
        return machine

    yield make
    for machine in machines:
        machine.release()
