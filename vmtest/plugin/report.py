"""Failure artifacts: what a failed VM test leaves for the person reading the report.

For every machine of a failed test: its full serial-console log, a PNG
screenshot when it has a display and runs, and (for machines still
answering) the journal of the current boot. Files go under
``<output dir>/<test name>/`` (emptied when the test runs again); the report
text lists them and quotes the console lines each node printed since the
test began — except for the node whose error already quotes them (printed
once). Only the machines' public API is used.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
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


def _quoted_by(error: BaseException | None) -> str | None:
    """The machine whose console lines ``error`` already quotes, if any."""
    if isinstance(error, MachineError) and error.console_tail:
        return error.machine
    return None


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


def collect(
    drivers: Sequence[Driver],
    output_dir: Path,
    nodeid: str,
    error: BaseException | None = None,
    began: float | None = None,
) -> str:
    """Save the artifacts of every machine of ``drivers``; return the report section text.

    ``error`` is what failed the test: a machine whose console lines it quotes is not quoted again.
    The others' lines are those since ``began`` (a :func:`time.monotonic` time: the test's start).
    """
    out = output_dir / safe_name(nodeid)
    out.mkdir(parents=True, exist_ok=True)
    quoted = _quoted_by(error)
    parts = []
    for driver in drivers:
        for name, machine in driver.machines.items():
            if machine.state is State.CREATED:
                continue
            files = _save_machine(machine, out)
            if name == quoted:
                lines = f"{name}: console lines: in the error above (the machine is {machine.state.value})"
            else:
                tail = machine.console_tail(CONSOLE_LINES, since=began)
                shown = "\n".join(f"  {line}" for line in tail) or "  (no output)"
                lines = (
                    f"{name}: last {CONSOLE_LINES} console lines since the test began "
                    f"(the machine is {machine.state.value}):\n{shown}"
                )
            parts.append(f"{lines}\n{name}: saved " + (", ".join(files) if files else "nothing"))
    return "\n\n".join(parts)
