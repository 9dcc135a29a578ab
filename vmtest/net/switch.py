"""One VLAN's ``vde_switch`` (a hub): started with a pipe on stdin (vde_switch exits on EOF, so it
dies with us) and proven ready by a ``showinfo`` round trip on its management socket."""

from __future__ import annotations

import logging
import shlex
import socket
import subprocess
import time
from pathlib import Path

from vmtest.core import statedirs
from vmtest.core.errors import LaunchError
from vmtest.core.log import log
from vmtest.core.pathattr import FileIn
from vmtest.core.proc import kill_group, spawn

# The longest socket path below a switch's directory: vde_switch's control socket ``switch/ctl`` and a port's
# data socket ``switch/<port>.<fd>`` (seen: ``001.6``; room for a 3-digit port and a 4-digit descriptor).
SOCKET_ROOM = len("/switch/000.0000")


def socket_room(vlan: int) -> int:
    """The longest socket path below a test network's directory for VLAN ``vlan``'s switch: vde_switch's
    control socket ``vlan<N>/switch/ctl`` and a port's data socket ``vlan<N>/switch/<port>.<fd>`` (seen:
    ``001.6``; room for a 3-digit port and a 4-digit file descriptor)."""
    return len(f"/vlan{vlan}") + SOCKET_ROOM


class Switch:
    """One VLAN's vde_switch (a hub), owned from start() to stop()."""

    socket = FileIn("sockets", "switch")
    mgmt = FileIn("sockets", "mgmt")

    def __init__(self, vlan: int, directory: Path, logger: logging.Logger) -> None:
        self.vlan = vlan
        self.directory = directory
        # the sockets: in ``directory`` unless it is too long for them (a given --vm-keep-state directory)
        self.sockets = statedirs.socket_home(directory, SOCKET_ROOM)
        self.logger = logger
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        statedirs.make_socket_home(self.directory, SOCKET_ROOM)
        argv = ["vde_switch", "--sock", str(self.socket), "--hub", "--mgmt", str(self.mgmt), "--dirmode", "0700"]
        self.process = spawn(argv, logger=self.logger, stdout=self.directory / "switch.log", stdin_pipe=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                out = (self.directory / "switch.log").read_text(errors="replace")[-2000:]
                raise LaunchError(
                    f"vlan{self.vlan}",
                    "starting vde_switch",
                    f"exited with status {self.process.returncode}: {shlex.join(argv)}\n{out}",
                )
            if self._showinfo():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"vlan{self.vlan}", "starting vde_switch", f"no answer within {timeout:.0f}s")
            time.sleep(0.02)
        log(self.logger, f"vlan{self.vlan}: switch up ({self.socket})")

    def _showinfo(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.mgmt))
                sock.sendall(b"showinfo\n")
                data = b""
                while b"1000 Success" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin is not None:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass
            kill_group(self.process)
            self.process = None
            statedirs.drop_socket_home(self.directory, SOCKET_ROOM)
