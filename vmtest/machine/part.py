"""The narrow interface every part of a :class:`~vmtest.machine.machine.Machine` is built on.

A part (commands, systemd, files, screen, keyboard, terminals, QEMU
controls) sees the machine's lifecycle only through :class:`Lifecycle`,
which :class:`vmtest.vm.lifecycle.VM` implements: the name and config, its
log, the channels (each call launches the machine when it is not running),
and the console tail for error messages. No part holds the whole machine.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Protocol

from vmtest.config.machine import MachineConfig
from vmtest.image import BootImage, ImageStore
from vmtest.vm.agent import GuestAgent
from vmtest.vm.backdoor import Result
from vmtest.vm.channels import Console, Monitor, NetworkAttachment
from vmtest.vm.paths import MachinePaths


class Lifecycle(Protocol):
    name: str
    config: MachineConfig
    logger: logging.Logger
    store: ImageStore
    image: BootImage | None
    network: NetworkAttachment

    @property
    def paths(self) -> MachinePaths: ...

    def log(self, msg: str, level: int = logging.INFO) -> None: ...

    def nested(self, msg: str) -> AbstractContextManager[None]: ...

    def console_tail(self, n: int = 20, since: float | None = None) -> list[str]: ...

    def is_running(self) -> bool: ...

    def monitor(self) -> Monitor: ...

    def console(self) -> Console: ...

    def agent(self) -> GuestAgent: ...

    def run(self, command: str, timeout: float) -> Result: ...
