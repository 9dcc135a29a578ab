"""Failure artifacts: what a failed VM test leaves for the person reading the report.

For every machine of a failed test: its full serial-console log, a PNG
screenshot when it has a display, and (for machines still answering) the
journal of the current boot. Files go under ``<output dir>/<test name>/``;
the report text lists them and quotes the last console lines of each node.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from vmtest.net.driver import Driver
from vmtest.machine.machine import Machine
from vmtest.vm.argv import MachinePaths

CONSOLE_LINES = 20


def safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def _save_machine(machine: Machine, out: Path) -> list[str]:
    saved = []
    if machine.state_dir is not None:
        console = MachinePaths(machine.state_dir).console_log
        if console.exists():
            dest = out / f"{machine.name}-console.log"
            shutil.copyfile(console, dest)
            saved.append(str(dest))
    if machine.is_running() and machine.monitor is not None and machine.config.virtualisation.graphics:
        dest = out / f"{machine.name}-screen.png"
        try:
            machine.monitor.command("screendump", filename=str(dest), format="png")
            saved.append(str(dest))
        except Exception as exc:  # a report must not fail because a screenshot did
            saved.append(f"(no screenshot: {exc})")
    if machine.is_up():
        dest = out / f"{machine.name}-journal.txt"
        try:
            status, text = machine.execute("journalctl -b --no-pager -o short-monotonic", timeout=60)
            dest.write_text(text)
            saved.append(str(dest))
        except Exception as exc:
            saved.append(f"(no journal: {exc})")
    return saved


def collect(driver: Driver, output_dir: Path, nodeid: str) -> str:
    """Save the artifacts of every machine; return the report section text."""
    out = output_dir / safe_name(nodeid)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, machine in driver.machines.items():
        if machine.state_dir is None and machine.process is None:
            continue
        files = _save_machine(machine, out)
        tail = "\n".join(f"  {line}" for line in machine.console_tail(CONSOLE_LINES)) or "  (no output)"
        parts.append(f"{name}: last {CONSOLE_LINES} console lines:\n{tail}\n{name}: saved " +
                     (", ".join(files) if files else "nothing (never started)"))
    return "\n\n".join(parts)
