"""``--vm-debug-hook``: a failing test pauses at its failure, machines running, until the user continues
(the NixOS debug-hook workflow).

At the failure (before the test's teardown) the terminal shows, per running machine, the command that
attaches a root shell to it (``vmtest attach SOCKET``: the machine's virtio console, not the
test's command channel) and the three ways to continue: Enter on this terminal, ``kill -USR1 PID``
or creating a file. The global timeout does not run while the test is paused.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from vmtest.net.driver import Driver
from vmtest.plugin.interactive import terminal

POLL = 0.5


def attach_lines(drivers: list[Driver]) -> list[str]:
    lines = []
    for driver in drivers:
        for name, machine in sorted(driver.machines.items()):
            vm = machine.vm
            if vm.is_running() and vm.dirs.path is not None:
                lines.append(f"  {name}: vmtest attach {vm.paths.attach}   (a root shell; Ctrl-] detaches)")
    return lines


def _stdin() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # no stdin, or pytest's captured one
        return None


def pause(config: pytest.Config, nodeid: str, drivers: list[Driver], resume_file: Path) -> str:
    """Wait until the user continues; returns how ("enter", "signal" or "file")."""
    resume_file.unlink(missing_ok=True)
    resumed = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda *_: resumed.set())
    lines = [
        f"vmtest: {nodeid} failed; paused with its machines running (--vm-debug-hook):",
        *(attach_lines(drivers) or ["  (no machine is running)"]),
        f"continue with Enter here, `kill -USR1 {os.getpid()}` or `touch {resume_file}`",
    ]
    try:
        with terminal(config):
            sys.stdout.write("\n" + "\n".join(lines) + "\n")
            sys.stdout.flush()
            stdin = _stdin()
            while True:
                if resumed.is_set():
                    return "signal"
                if resume_file.exists():
                    resume_file.unlink(missing_ok=True)
                    return "file"
                if stdin is None:
                    time.sleep(POLL)
                    continue
                ready, _, _ = select.select([stdin], [], [], POLL)
                if ready:
                    if os.read(stdin, 4096) == b"":  # no terminal (EOF): only the signal or the file
                        stdin = None
                    else:
                        return "enter"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        resume_file.unlink(missing_ok=True)
