"""What a test declares: machine configurations, their virtualisation options, and run settings."""

from vmtest.config.machine import File, MachineConfig
from vmtest.config.settings import Settings
from vmtest.config.virtualisation import Virtualisation

__all__ = ["File", "MachineConfig", "Settings", "Virtualisation"]
