"""``shell_interact()`` and ``console_interact()``: this terminal joined to a machine, as in NixOS's driver.

The shell is a root shell on the guest's virtio console, hvc0 (not the backdoor's serial port the test's
commands use); the console is the serial console, whose output keeps going to the console log and tails.
Ctrl-] returns to the caller (a REPL, a debugger, the test).
"""

from __future__ import annotations

import os
import sys

from vmtest.core.errors import MachineError
from vmtest.vm.attach import ESCAPE_NAME, attach_shell, pump
from vmtest.vm.lifecycle import VM


def shell_interact(vm: VM) -> None:
    """A root shell in ``vm`` on this terminal (boots it first if needed) until Ctrl-]."""
    if vm.config.image is not None:
        raise MachineError(
            vm.name,
            "shell_interact",
            "a foreign image has no attach console with a root shell (vmtest's guests do); use "
            "console_interact() (its serial console, where you can log in) instead",
        )
    vm.wait_ready()
    attach_shell(vm.paths.attach, vm.name)


def console_interact(vm: VM) -> None:
    """The serial console of ``vm`` on this terminal until Ctrl-] (keys go to the guest's ttyS0)."""
    console = vm.console()
    read_end, write_end = os.pipe()
    sys.stdout.write(f"{vm.name}: serial console ({ESCAPE_NAME} leaves it)\r\n")
    sys.stdout.flush()

    def forward(data: bytes) -> None:
        try:
            os.write(write_end, data)
        except OSError:  # closed meanwhile: console_interact has returned
            pass

    console.tap(forward)
    try:
        pump(read_end, console.write)
    finally:
        console.tap(None)
        os.close(write_end)
        os.close(read_end)
        sys.stdout.write("\r\n")
        sys.stdout.flush()
