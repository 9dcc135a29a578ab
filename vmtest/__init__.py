"""vmtest: integration tests in real QEMU virtual machines, driven from pytest.

The public API: declare machines (:class:`MachineConfig`, :class:`File`,
:class:`Virtualisation`; a disk image vmtest did not build: :class:`ForeignImage`),
drive them (:class:`Machine`; a test network is a :class:`Driver`), and the exceptions a test can meet (all derive from
:class:`VmtestError`).
"""

from vmtest.config.foreign import ForeignImage
from vmtest.config.machine import File, MachineConfig
from vmtest.config.virtualisation import Virtualisation
from vmtest.core.errors import (
    CommandFailed,
    ConfigError,
    HostError,
    ImageBuildError,
    LaunchError,
    MachineError,
    NoDisplay,
    PollingConditionFailed,
    TextNotFound,
    Timeout,
    UnitFailed,
    VmtestError,
)
from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver
from vmtest.vm.state import State

__all__ = [
    "CommandFailed",
    "ConfigError",
    "Driver",
    "File",
    "ForeignImage",
    "HostError",
    "ImageBuildError",
    "LaunchError",
    "Machine",
    "MachineConfig",
    "MachineError",
    "NoDisplay",
    "PollingConditionFailed",
    "State",
    "TextNotFound",
    "Timeout",
    "UnitFailed",
    "Virtualisation",
    "VmtestError",
]
