"""The serial console (ttyS0) as a test uses it: its last lines, its whole log, waiting for a line,
typing on it."""

from __future__ import annotations

import re
import time

from vmtest.core.errors import Timeout
from vmtest.machine.part import Lifecycle
from vmtest.vm.channels import CONSOLE_TAIL


class Serial:
    def __init__(self, vm: Lifecycle) -> None:
        self.vm = vm

    def tail(self, n: int = CONSOLE_TAIL, since: float | None = None) -> list[str]:
        return self.vm.console_tail(n, since)

    def log(self) -> str:
        """Everything the console printed in this machine's runs so far."""
        try:
            return self.vm.paths.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def send(self, text: str) -> None:
        self.vm.console().write(text.encode())

    def wait_for_text(self, regex: str, timeout: float | None = None) -> str:
        with self.vm.nested(f"waiting for {regex!r} on the serial console"):
            console = self.vm.console()
            start = time.monotonic()
            match = console.wait_for(re.compile(regex), timeout)
            if match is None:
                raise Timeout(
                    self.vm.name,
                    f"waiting for {regex!r} on the serial console",
                    "not printed" + (f" within {timeout:g}s" if timeout is not None else " before QEMU exited"),
                    time.monotonic() - start,
                    self.vm.console_tail(since=start),
                )
            return str(match.string)
