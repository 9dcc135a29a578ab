"""Failure artifacts: what a failed VM test leaves for the person reading the report.

For every machine of a failed test: its full serial-console log, a PNG
screenshot when it has a display and runs, and (for machines still
answering) the journal of the current boot. Files go under
``<output dir>/<test name>/``; the report text lists them and quotes the
last console lines of each node (:func:`collect`). :func:`save_machines`
returns the same facts as data, for the HTML report
(:mod:`vmtest.plugin.htmlreport`). Only the machines' public API is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver
from vmtest.vm.state import State

CONSOLE_LINES = 20


def safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@dataclass
class MachineReport:
    """What a failed test left of one machine: its state, console tail and saved files."""

    name: str
    state: str
    tail: list[str]
    console: Path | None = None
    screen: Path | None = None
    journal: Path | None = None
    problems: list[str] = field(default_factory=list)  # "(no screenshot: ...)"

    def files(self) -> list[str]:
        """The saved files (and why one is missing), as the text report lists them."""
        saved = [str(p) for p in (self.console, self.screen) if p is not None]
        saved += [p for p in self.problems if p.startswith("(no screenshot")]
        if self.journal is not None:
            saved.append(str(self.journal))
        saved += [p for p in self.problems if not p.startswith("(no screenshot")]
        return saved

    def text(self) -> str:
        tail = "\n".join(f"  {line}" for line in self.tail) or "  (no output)"
        files = self.files()
        return (
            f"{self.name}: last {CONSOLE_LINES} console lines (the machine is {self.state}):\n{tail}\n"
            f"{self.name}: saved " + (", ".join(files) if files else "nothing")
        )


def _save_machine(machine: Machine, out: Path) -> MachineReport:
    found = MachineReport(machine.name, machine.state.value, [])
    console = machine.get_console_log()
    if console:
        found.console = out / f"{machine.name}-console.log"
        found.console.write_text(console)
    if machine.is_running() and machine.config.virtualisation.graphics:
        dest = out / f"{machine.name}-screen.png"
        try:
            machine.screen.dump(dest)
            found.screen = dest
        except Exception as exc:  # a report must not fail because a screenshot did
            found.problems.append(f"(no screenshot: {exc})")
    if machine.is_up():
        dest = out / f"{machine.name}-journal.txt"
        try:
            _, text = machine.execute("journalctl -b --no-pager -o short-monotonic", timeout=60)
            dest.write_text(text)
            found.journal = dest
        except Exception as exc:
            found.problems.append(f"(no journal: {exc})")
    found.tail = machine.console_tail(CONSOLE_LINES)
    return found


def save_machines(drivers: Sequence[Driver], output_dir: Path, nodeid: str) -> list[MachineReport]:
    """Save the artifacts of every started machine of ``drivers`` under ``<output_dir>/<test>/``."""
    out = output_dir / safe_name(nodeid)
    out.mkdir(parents=True, exist_ok=True)
    return [
        _save_machine(machine, out)
        for driver in drivers
        for machine in driver.machines.values()
        if machine.state is not State.CREATED
    ]


def text(machines: Sequence[MachineReport]) -> str:
    """The report section text: each machine's console tail and saved files."""
    return "\n\n".join(m.text() for m in machines)


def collect(drivers: Sequence[Driver], output_dir: Path, nodeid: str) -> str:
    """Save the artifacts of every machine of ``drivers``; return the report section text."""
    return text(save_machines(drivers, output_dir, nodeid))
