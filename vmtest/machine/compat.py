"""Verbs of the NixOS driver that are other verbs under another name, and deprecated names.

:class:`NixosAliases` is a base of :class:`~vmtest.machine.machine.Machine`: it
keeps the facade to the verbs that do something of their own.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from vmtest.machine.commands import Commands


class Machine(Protocol):
    """What the aliases use of the machine."""

    commands: Commands

    def copy_from_machine(
        self, source: str, target_dir: str | os.PathLike[str] = "", via_shell: bool = False
    ) -> Path: ...

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]: ...

    def get_tty_text(self, tty: int) -> str: ...

    def log(self, msg: str) -> None: ...


class NixosAliases:
    def copy_from_vm(
        self: Machine, source: str, target_dir: str | os.PathLike[str] = "", via_shell: bool = False
    ) -> Path:
        """Deprecated (as in NixOS): use :meth:`copy_from_machine`, which this calls."""
        warnings.warn(
            "copy_from_vm is deprecated, use copy_from_machine (the same arguments)", DeprecationWarning, stacklevel=2
        )
        return self.copy_from_machine(source, target_dir, via_shell)

    def start_job(self: Machine, unit: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl start unit``; return (status, output)."""
        return self.systemctl(f"start {unit}", user)

    def stop_job(self: Machine, unit: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl stop unit``; return (status, output)."""
        return self.systemctl(f"stop {unit}", user)

    def dump_tty_contents(self: Machine, tty: int) -> str:
        """Log the text of virtual terminal ``tty`` and return it."""
        text = self.get_tty_text(tty)
        self.log(f"tty{tty} shows:\n{text}")
        return text

    def sleep(self, secs: float) -> None:
        """Wait ``secs`` seconds of host time (the guest keeps running)."""
        time.sleep(secs)

    @contextmanager
    def streaming(self: Machine) -> Iterator[None]:
        """``with machine.streaming(): machine.succeed("make")``: while the block runs, every command's
        stdout is also written to the serial console as it comes, so the log shows it line by line
        (``name # line``) while a long command runs (nixpkgs issue 219352); the call still returns it
        whole. The console is slow (115200 baud): for commands with little output. Not shown while
        ``serial_stdout_off()`` is in effect."""
        before = self.commands.stream
        self.commands.stream = True
        try:
            yield
        finally:
            self.commands.stream = before
