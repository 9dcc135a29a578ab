"""What the lifecycle needs from the outside world: a QEMU process and its channels.

:class:`Backend` spawns QEMU and attaches QMP, the serial console and the
backdoor shell; :mod:`vmtest.vm.qemu_backend` is the real one, unit tests of
the lifecycle use fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vmtest.vm.agent import GuestAgent
from vmtest.vm.backdoor import Result
from vmtest.vm.paths import MachinePaths

CONSOLE_TAIL = 20


class Process(Protocol):
    """A spawned QEMU."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None) -> int | None:
        """The exit status, or None if still running after ``timeout``."""
        ...

    def kill(self) -> None:
        """Kill it (and its process group) and reap it."""
        ...


class Monitor(Protocol):
    def command(self, name: str, /, **args: Any) -> Any: ...

    def human(self, command_line: str) -> str: ...

    def wait_event(
        self, accept: Callable[[dict[str, Any]], bool], timeout: float, keep: bool = False
    ) -> dict[str, Any] | None: ...

    def take_resets(self) -> int: ...

    def close(self) -> None: ...


class Console(Protocol):
    echo: bool

    def preload(self, data: bytes) -> None: ...

    def tail(self, n: int = CONSOLE_TAIL, since: float | None = None) -> list[str]: ...

    def write(self, data: bytes) -> None: ...

    def tap(self, receiver: Callable[[bytes], None] | None) -> None: ...

    def wait_for(self, pattern: Any, timeout: float | None) -> Any: ...

    def detach(self) -> None: ...


class Shell(Protocol):
    """The backdoor shell (:class:`vmtest.vm.backdoor.Backdoor`)."""

    # The ready banner said that the guest's per-run set-up completed (the backdoor's banner says so; a
    # serial shell's never does).
    setup_done: bool

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> str: ...

    def run(self, command: str, timeout: float) -> Result: ...

    def send_only(self, command: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class Channels:
    monitor: Monitor
    console: Console
    shell: Shell
    agent: GuestAgent | None = None  # the guest agent's held connection (virtualisation.qemu.guest_agent)

    def close(self) -> None:
        self.shell.close()
        self.monitor.close()
        self.console.detach()
        if self.agent is not None:
            self.agent.close()


class ChannelError(Exception):
    """A channel could not be attached (the reason is the message)."""


class Backend(Protocol):
    """Spawns QEMU and attaches its channels (:mod:`vmtest.vm.qemu_backend` is the real one)."""

    def spawn(self, argv: Sequence[str], output: Path, logger: logging.Logger, stdin: Path | None = None) -> Process:
        """Start QEMU with ``argv``, its output into ``output``, its stdin from ``stdin`` (default: nothing)."""
        ...

    def attach(
        self, name: str, paths: MachinePaths, logger: logging.Logger, alive: Callable[[], bool], echo: bool
    ) -> Channels: ...


@dataclass(frozen=True)
class NetworkAttachment:
    """How a machine is wired into a test network (built by :mod:`vmtest.net`)."""

    qemu_args: tuple[str, ...] = ()
    nic_ids: tuple[str, ...] = ()  # QEMU device ids, for set_link
    setup_script: str = ""  # run in the guest at boot: its NICs' names and addresses
    hosts: str = ""  # /etc/hosts naming every node of the network ("": the image's own)
    ensure_up: Callable[[], None] | None = None  # bring the switches up before QEMU connects to them
    key_args: tuple[str, ...] = ()  # qemu_args with placeholder sockets: what a snapshot's key sees
