"""vmtest: integration tests in real QEMU virtual machines, driven from pytest."""

from vmtest.config.machine import File, MachineConfig
from vmtest.core.errors import (
    CommandFailed,
    ConfigError,
    HostError,
    ImageBuildError,
    LaunchError,
    MachineError,
    NoDisplay,
    TextNotFound,
    Timeout,
    VmtestError,
)
from vmtest.machine.machine import Machine
from vmtest.config.virtualisation import Virtualisation

__all__ = [
    "CommandFailed", "ConfigError", "File", "HostError", "ImageBuildError", "LaunchError",
    "Machine", "MachineConfig", "MachineError", "NoDisplay", "TextNotFound", "Timeout", "Virtualisation", "VmtestError",
]
