"""vmtest: integration tests in real QEMU virtual machines, driven from pytest."""

from .config import File, MachineConfig
from .errors import (
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
from .machine import Machine
from .options import Virtualisation

__all__ = [
    "CommandFailed", "ConfigError", "File", "HostError", "ImageBuildError", "LaunchError",
    "Machine", "MachineConfig", "MachineError", "NoDisplay", "TextNotFound", "Timeout", "Virtualisation", "VmtestError",
]
