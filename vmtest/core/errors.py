"""The one exception hierarchy of vmtest.

Every error a user can see derives from :class:`VmtestError`. Messages name
what was attempted, on which machine, for how long, and (for machine errors)
the last console lines, so nobody needs a debugger to see why a VM failed.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class VmtestError(Exception):
    """Base class of every vmtest error."""


def _with_fix(text: str, fix: str) -> str:
    """``text``, then what to do about it in parentheses (when there is a ``fix``)."""
    return f"{text} ({fix})" if fix else text


class ConfigError(VmtestError):
    """A machine configuration (or a vmtest setting) is invalid.

    The message names the field, the value, why it is wrong and what to do.
    """

    def __init__(self, field: str, value: object, why: str, fix: str = "") -> None:
        self.field = field
        self.value = value
        self.why = why
        self.fix = fix
        super().__init__(_with_fix(f"{field}={value!r}: {why}", fix))


class HostError(VmtestError):
    """The host lacks something vmtest needs (a program, a device, space)."""


class ImageBuildError(VmtestError):
    """Building a guest image failed."""

    def __init__(self, step: str, message: str, output_tail: Sequence[str] = ()) -> None:
        self.step = step
        self.output_tail = list(output_tail)
        text = f"image build failed while {step}: {message}"
        if self.output_tail:
            text += "\n--- last output lines ---\n" + "\n".join(self.output_tail)
        super().__init__(text)


class CacheError(VmtestError):
    """A cache entry could not be exported, imported or fetched (a bad archive, a corrupt download).

    The message names the entry (``kind/key``), where it came from, why, and what to do.
    """

    def __init__(self, entry: str, source: str, why: str, fix: str = "") -> None:
        self.entry = entry
        self.source = source
        self.why = why
        super().__init__(_with_fix(f"cache entry {entry} from {source}: {why}", fix))


def _with_console(text: str, console_tail: Sequence[str]) -> str:
    if console_tail:
        text += "\n--- last console lines ---\n" + "\n".join(console_tail)
    return text


def describe_exit(status: int | None) -> str:
    """``QEMU exited with status 1`` / ``QEMU was killed by SIGKILL`` / ``QEMU is still running``."""
    if status is None:
        return "QEMU is still running"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"QEMU was killed by {name}"
    return f"QEMU exited with status {status}"


@dataclass(frozen=True)
class QemuFacts:
    """What a QEMU left behind, as QEMU's own ``VMLaunchFailure`` carries it: its command line, its exit
    status (negative: killed by that signal; None: still running) and the tail of its own output."""

    argv: tuple[str, ...] = ()
    status: int | None = None
    output: str = ""

    def describe(self) -> str:
        text = f"\n--- QEMU's output ---\n{self.output}" if self.output else ""
        return text + (f"\n--- QEMU's command line ---\n{shlex.join(self.argv)}" if self.argv else "")


class MachineError(VmtestError):
    """Something went wrong with a running (or starting) machine.

    The message names the machine, the action, how long it took, and quotes the last console lines
    (``console_tail``) and, where QEMU's own state explains it, :class:`QemuFacts` (``qemu``).
    """

    def __init__(
        self,
        machine: str,
        action: str,
        message: str,
        elapsed: float | None = None,
        console_tail: Sequence[str] = (),
        qemu: QemuFacts | None = None,
    ) -> None:
        self.machine = machine
        self.action = action
        self.elapsed = elapsed
        self.console_tail = list(console_tail)
        self.qemu = qemu
        took = (
            "" if elapsed is None else f" after {elapsed:.1f}s" if elapsed >= 0.1 else f" after {elapsed * 1000:.0f}ms"
        )
        text = f"{machine}: {action} failed{took}: {message}" + (qemu.describe() if qemu else "")
        super().__init__(_with_console(text, console_tail))


class LaunchError(MachineError):
    """QEMU could not be started, or exited when it should have been running.

    ``argv``, ``status`` and ``output`` are QEMU's command line, exit status and output (see
    :class:`QemuFacts`).
    """

    @property
    def argv(self) -> list[str]:
        return list(self.qemu.argv) if self.qemu else []

    @property
    def status(self) -> int | None:
        return self.qemu.status if self.qemu else None

    @property
    def output(self) -> str:
        return self.qemu.output if self.qemu else ""


def _shorten(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


class CommandFailed(MachineError):
    """A guest command returned an unexpected exit status.

    ``output`` is its stdout, ``stderr`` its stderr; ``elapsed`` is the command's own time (a boot the
    command waited for does not count).
    """

    def __init__(
        self,
        machine: str,
        command: str,
        status: int,
        output: str,
        elapsed: float,
        expected: str = "exit status 0",
        console_tail: Sequence[str] = (),
        stderr: str = "",
    ) -> None:
        self.command = command
        self.status = status
        self.output = output
        self.stderr = stderr
        message = f"expected {expected}, got exit status {status}"
        message += f"\n--- stderr ---\n{_shorten(stderr).rstrip(chr(10))}" if stderr else "\n--- stderr: (empty) ---"
        message += f"\n--- output ---\n{_shorten(output).rstrip(chr(10))}" if output else "\n--- output: (empty) ---"
        super().__init__(machine, f"command {command!r}", message, elapsed, console_tail)


class Timeout(MachineError):
    """A wait ran out of time."""


class UnitFailed(MachineError):
    """A systemd unit failed (or went inactive with nothing pending) while being waited for."""


class PollingConditionFailed(VmtestError):
    """A polling condition (``vms.polling_condition``) stopped holding, or never came to hold."""


class NoDisplay(MachineError):
    """The machine has no display (``virtualisation.graphics=False``)."""


class TextNotFound(Timeout):
    """``wait_for_text`` ran out of time; carries the last screenshot and every reading of it."""

    def __init__(
        self,
        machine: str,
        regex: str,
        timeout: float,
        elapsed: float,
        screenshot: Path | None,
        readings: dict[str, str],
        console_tail: Sequence[str],
    ) -> None:
        self.screenshot = screenshot
        self.readings = readings
        parts = [f"no match within {timeout:g}s; last screenshot: {screenshot or '(none)'}"]
        for name, text in readings.items():
            shown = text if len(text) <= 3000 else text[:1500] + "\n[...]\n" + text[-1500:]
            parts.append(f"--- read by {name} ---\n{shown}")
        super().__init__(machine, f"waiting for {regex!r} on the screen", "\n".join(parts), elapsed, console_tail)
