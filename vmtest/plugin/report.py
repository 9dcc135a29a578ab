"""Failure artifacts: what a failed VM test leaves for the person reading the report.

For every machine of a failed test: its full serial-console log, a PNG
screenshot when it has a display and runs, and (for machines still
answering) the journal of the current boot. Files go under
``<output dir>/<test name>/``; the report text lists them and quotes the
last console lines of each node. Only the machines' public API is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver
from vmtest.vm.state import State

CONSOLE_LINES = 20


def safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def _save_machine(machine: Machine, out: Path) -> list[str]:
    saved = []
    console = machine.get_console_log()
    if console:
        dest = out / f"{machine.name}-console.log"
        dest.write_text(console)
        saved.append(str(dest))
    if machine.is_running() and machine.config.virtualisation.graphics:
        dest = out / f"{machine.name}-screen.png"
        try:
            machine.screen.dump(dest)
            saved.append(str(dest))
        except Exception as exc:  # a report must not fail because a screenshot did
            saved.append(f"(no screenshot: {exc})")
    if machine.is_up():
        dest = out / f"{machine.name}-journal.txt"
        try:
            _, text = machine.execute("journalctl -b --no-pager -o short-monotonic", timeout=60)
            dest.write_text(text)
            saved.append(str(dest))
        except Exception as exc:
            saved.append(f"(no journal: {exc})")
    return saved


def collect(drivers: Sequence[Driver], output_dir: Path, nodeid: str) -> str:
    """Save the artifacts of every machine of ``drivers``; return the report section text."""
    out = output_dir / safe_name(nodeid)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for driver in drivers:
        for name, machine in driver.machines.items():
            if machine.state is State.CREATED:
                continue
            files = _save_machine(machine, out)
            tail = "\n".join(f"  {line}" for line in machine.console_tail(CONSOLE_LINES)) or "  (no output)"
            parts.append(
                f"{name}: last {CONSOLE_LINES} console lines (the machine is {machine.state.value}):\n{tail}\n"
                f"{name}: saved " + (", ".join(files) if files else "nothing")
            )
    return "\n\n".join(parts)
