"""The real :class:`~vmtest.vm.lifecycle.Backend`: QEMU through :mod:`vmtest.core.proc`, channels over unix sockets.

Every channel is a unix socket QEMU listens on (``server=on,wait=off``);
readiness of each is proven by a handshake, never by sleeping: the socket
accepting, the QMP greeting, later the backdoor's banner.
"""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from vmtest.core.proc import kill_group, spawn
from vmtest.vm import crash
from vmtest.vm.agent import GuestAgent
from vmtest.vm.backdoor import Backdoor
from vmtest.vm.channels import ChannelError, Channels, Process
from vmtest.vm.console import SerialConsole
from vmtest.vm.paths import MachinePaths
from vmtest.vm.qmp import Monitor, QMPError

SOCKET_TIMEOUT = 30.0


class QemuProcess:
    """A spawned QEMU (its own process group; SIGKILLed if we die)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        kill_group(self.popen)


def connect_unix(path: Path, alive: Callable[[], bool], timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    """Connect to ``path`` once QEMU listens there (it creates the socket shortly after starting)."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise ChannelError(f"QEMU exited before {path.name} accepted a connection")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise ChannelError(f"{path} did not accept a connection within {timeout:.0f}s") from None
            time.sleep(0.02)


def await_greeting(path: Path, alive: Callable[[], bool], timeout: float = SOCKET_TIMEOUT) -> None:
    """Wait until QEMU sends its QMP greeting on ``path``, on a connection of our own that we then close.
    A listening socket accepts a connection into its backlog even while QEMU does not serve it (QEMU blocked
    before its main loop, e.g. connecting to a network switch): then this fails after ``timeout`` seconds,
    where qemu.qmp's client would wait for the greeting forever."""
    deadline = time.monotonic() + timeout
    with connect_unix(path, alive, timeout) as sock:
        sock.setblocking(False)
        while True:
            if not alive():
                raise ChannelError(f"QEMU exited before it sent its QMP greeting on {path.name}")
            if select.select([sock], [], [], 0.05)[0]:
                try:
                    if sock.recv(4096):
                        return
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                raise ChannelError(f"QEMU closed {path.name} before it sent its QMP greeting")
            if time.monotonic() > deadline:
                raise ChannelError(
                    f"QEMU accepted no QMP connection on {path} within {timeout:.0f}s (blocked before its main loop?)"
                )


def hold_agent(paths: MachinePaths, alive: Callable[[], bool]) -> GuestAgent | None:
    """A connection to the guest agent's port held for the machine's life, when it has one (QEMU made its
    socket: ``virtualisation.qemu.guest_agent``); see :mod:`vmtest.vm.agent` for why."""
    if not paths.agent.exists():
        return None
    return GuestAgent.hold(paths.agent, connect_unix(paths.agent, alive))


class QemuBackend:
    def spawn(self, argv: Sequence[str], output: Path, logger: logging.Logger, stdin: Path | None = None) -> Process:
        return QemuProcess(spawn(argv, logger=logger, stdout=output, stdin_file=stdin))

    def attach(
        self, name: str, paths: MachinePaths, logger: logging.Logger, alive: Callable[[], bool], echo: bool
    ) -> Channels:
        """QMP (greeting + capabilities), the serial console reader and the backdoor socket."""
        monitor, console = open_monitor(name, paths, logger, alive, echo)
        try:
            console.attach(connect_unix(paths.serial, alive))
            shell = Backdoor(name, connect_unix(paths.shell, alive), logger, crash_watch=lambda: crash.watcher(console))
            agent = hold_agent(paths, alive)
        except ChannelError:
            monitor.close()
            console.detach()
            raise
        return Channels(monitor, console, shell, agent)


def open_monitor(
    name: str, paths: MachinePaths, logger: logging.Logger, alive: Callable[[], bool], echo: bool
) -> tuple[Monitor, SerialConsole]:
    """A launched QEMU's QMP monitor, connected (greeting + capabilities), and its serial console's reader, not yet
    attached to the serial socket (every backend's first step of attaching)."""
    await_greeting(paths.qmp, alive)  # QEMU serves QMP: the QMP client may connect now
    monitor = Monitor(paths.qmp)
    try:
        monitor.connect()
    except (QMPError, OSError) as exc:
        raise ChannelError(f"no QMP greeting: {exc}") from None
    console = SerialConsole(name, logger, paths.console_log)
    console.echo = echo
    return monitor, console
