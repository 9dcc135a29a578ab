"""One machine's state directory: where its sockets, logs, disks and exchange directory live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig


@dataclass(frozen=True)
class MachinePaths:
    """Where one machine's per-run files live (all inside its state directory)."""

    state_dir: Path

    @property
    def qmp(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def shell(self) -> Path:
        return self.state_dir / "shell.sock"

    @property
    def serial(self) -> Path:
        return self.state_dir / "serial.sock"

    @property
    def agent(self) -> Path:
        """The qemu-guest-agent's virtio-serial port."""
        return self.state_dir / "qga.sock"

    @property
    def xchg(self) -> Path:
        """Host side of the 9p share mounted at /tmp/xchg in the guest."""
        return self.state_dir / "xchg"

    @property
    def qemu_log(self) -> Path:
        return self.state_dir / "qemu.log"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    def empty_disk(self, index: int) -> Path:
        return self.state_dir / f"empty{index}.qcow2"


def root_disk(name: str, config: MachineConfig, paths: MachinePaths) -> Path | None:
    """The machine's writable root overlay, or None when nothing persists (``disk_image=None``)."""
    template = config.virtualisation.disk_image
    if template is None:
        return None
    return Path(template.format(state_dir=paths.state_dir, name=name))
