"""One machine's state directory: where its sockets, logs, disks and exchange directory live."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core import statedirs
from vmtest.core.errors import MachineError

# attribute -> file name in the state directory
FILES = {
    "qmp": "qmp.sock",  # QMP
    "shell": "shell.sock",  # the backdoor's virtio serial port (org.vmtest.backdoor)
    "serial": "serial.sock",  # the serial console
    "attach": "attach.sock",  # the virtio console (hvc0): a root shell for people (vmtest attach)
    "agent": "qga.sock",  # qemu-guest-agent's virtio-serial port
    "xchg": "xchg",  # host side of the 9p exchange directory (/tmp/xchg in the guest)
    "qemu_log": "qemu.log",  # QEMU's own stdout and stderr
    "console_log": "console.log",  # everything the serial console printed
    "tpm_state": "tpm",  # swtpm's state directory (virtualisation.tpm)
    "tpm_socket": "swtpm.sock",  # swtpm's control socket, QEMU's TPM chardev
}
# The longest socket path below a state directory (QEMU's and swtpm's sockets).
SOCKET_ROOM = max(len(f"/{name}") for name in FILES.values() if name.endswith(".sock"))


@dataclass(frozen=True)
class MachinePaths:
    """Where one machine's per-run files live: inside its state directory (names in :data:`FILES`), the
    sockets in its :func:`statedirs.socket_home`."""

    state_dir: Path
    sockets: Path = field(init=False)
    qmp: Path = field(init=False)
    shell: Path = field(init=False)
    serial: Path = field(init=False)
    attach: Path = field(init=False)
    agent: Path = field(init=False)
    xchg: Path = field(init=False)
    qemu_log: Path = field(init=False)
    console_log: Path = field(init=False)
    tpm_state: Path = field(init=False)
    tpm_socket: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sockets", statedirs.socket_home(self.state_dir, SOCKET_ROOM))
        for attr, name in FILES.items():
            object.__setattr__(self, attr, (self.sockets if name.endswith(".sock") else self.state_dir) / name)

    @property
    def separate_sockets(self) -> bool:
        """The sockets live outside the state directory (it is too long for them)."""
        return self.sockets != self.state_dir

    def prepare(self) -> None:
        """Make the state and exchange directories (and a separate socket directory, owned by this process
        so that a later run removes it once this one is gone), remove the last launch's sockets, empty
        QEMU's log."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.xchg.mkdir(exist_ok=True)
        statedirs.make_socket_home(self.state_dir, SOCKET_ROOM)
        for sock in (self.qmp, self.shell, self.serial, self.attach, self.agent):
            sock.unlink(missing_ok=True)
        self.qemu_log.write_bytes(b"")

    def qemu_output(self, limit: int = 3000) -> str:
        """The end of what QEMU itself printed (its stdout+stderr); "" when there is nothing to read."""
        try:
            return self.qemu_log.read_text(errors="replace").strip()[-limit:]
        except OSError:
            return ""

    def empty_disk(self, index: int) -> Path:
        return self.state_dir / f"empty{index}.qcow2"


class StateDir:
    """Where one machine's state directory is, and whether this run made it (and so removes it).

    With none given, a temporary one is made at the first launch and removed at release unless ``keep``;
    a given one is never removed."""

    def __init__(self, name: str, given: Path | None, keep: bool = False) -> None:
        self.name = name
        self.path = given
        self.owned = given is None  # made by this run (a kept machine's is let go: no longer owned)
        self.keep = keep
        self.left_running = False  # let go with QEMU running (its sockets stay in use)

    @property
    def temporary(self) -> bool:
        """This run removes it when the machine is released."""
        return self.owned and not self.keep

    def paths(self) -> MachinePaths:
        if self.path is None:
            raise MachineError(self.name, "finding its state directory", "the machine was never started")
        return MachinePaths(self.path)

    def prepare(self) -> MachinePaths:
        """Make it if need be and prepare it for a launch (:meth:`MachinePaths.prepare`)."""
        if self.path is None:
            self.path = statedirs.make(f"vmtest-{self.name}-", socket_room=SOCKET_ROOM)
        paths = MachinePaths(self.path)
        paths.prepare()
        return paths

    def let_go(self) -> None:
        """QEMU runs on after this run (``--vm-keep-on-failure``): the directory, and its sockets, stay."""
        self.owned = False
        self.left_running = True

    def remove(self) -> None:
        """Remove a temporary one (idempotent); a given or kept one stays. A separate socket directory
        (:func:`statedirs.socket_home`) goes too unless the machine was let go (QEMU still serves its sockets)."""
        if self.path is not None and not self.left_running:
            statedirs.drop_socket_home(self.path, SOCKET_ROOM)
        if self.temporary and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def root_disk(name: str, config: MachineConfig, paths: MachinePaths) -> Path | None:
    """The machine's writable root overlay, or None when nothing persists (``disk_image=None``)."""
    template = config.virtualisation.disk_image
    if template is None:
        return None
    return Path(template.format(state_dir=paths.state_dir, name=name))
