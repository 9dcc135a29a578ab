"""Failure artifacts: what a failed VM test leaves for the person reading the report.

For every machine of a failed test: its full serial-console log, a PNG
screenshot when it has a display and runs, and (for machines still
answering) the journal of the current boot. Files go under
``<output dir>/<test name>/`` (emptied when the test runs again:
:func:`clear`); the report text lists them and quotes the console lines each
node printed since the test began, except for the node whose error already
quotes them (printed once). :func:`save_machines` saves the files and
returns the facts as data, :func:`text` words them; the HTML report
(:mod:`vmtest.plugin.htmlreport`) uses the same data. Only the machines' public API is used.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmtest.core.errors import MachineError
from vmtest.machine.machine import Machine
from vmtest.net.driver import Driver
from vmtest.vm.state import State

CONSOLE_LINES = 20


def safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def clear(output_dir: Path, nodeid: str) -> None:
    """Remove what an earlier run of test ``nodeid`` left in its directory (it runs again now)."""
    out = output_dir / safe_name(nodeid)
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out, ignore_errors=True)


def quoted_by(error: BaseException | None) -> str | None:
    """The machine whose console lines ``error`` already quotes, if any."""
    if isinstance(error, MachineError) and error.console_tail:
        return error.machine
    return None


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
    quoted: bool = False  # the test's error quotes this machine's console lines: not again here

    def files(self) -> list[str]:
        """The saved files (and why one is missing), as the text report lists them."""
        saved = [str(p) for p in (self.console, self.screen) if p is not None]
        saved += [p for p in self.problems if p.startswith("(no screenshot")]
        if self.journal is not None:
            saved.append(str(self.journal))
        saved += [p for p in self.problems if not p.startswith("(no screenshot")]
        return saved

    def text(self) -> str:
        files = self.files()
        if self.quoted:
            lines = f"{self.name}: console lines: in the error above (the machine is {self.state})"
        else:
            tail = "\n".join(f"  {line}" for line in self.tail) or "  (no output)"
            lines = (
                f"{self.name}: last {CONSOLE_LINES} console lines since the test began "
                f"(the machine is {self.state}):\n{tail}"
            )
        return f"{lines}\n{self.name}: saved " + (", ".join(files) if files else "nothing")


def _save_machine(machine: Machine, out: Path, began: float | None) -> MachineReport:
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
    found.tail = machine.console_tail(CONSOLE_LINES, since=began)
    return found


def save_machines(
    drivers: Sequence[Driver],
    output_dir: Path,
    nodeid: str,
    error: BaseException | None = None,
    began: float | None = None,
) -> list[MachineReport]:
    """Save the artifacts of every started machine of ``drivers`` under ``<output_dir>/<test>/``.

    ``error`` is what failed the test: a machine whose console lines it quotes is marked ``quoted``.
    The tails are the lines since ``began`` (a :func:`time.monotonic` time: the test's start).
    """
    out = output_dir / safe_name(nodeid)
    out.mkdir(parents=True, exist_ok=True)
    reports = [
        _save_machine(machine, out, began)
        for driver in drivers
        for machine in driver.machines.values()
        if machine.state is not State.CREATED
    ]
    for found in reports:
        found.quoted = found.name == quoted_by(error)
    return reports


def text(machines: Sequence[MachineReport]) -> str:
    """The report section text: each machine's console tail and saved files."""
    return "\n\n".join(m.text() for m in machines)
