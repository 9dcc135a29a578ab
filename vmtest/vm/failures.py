"""How the lifecycle words its errors: each names the machine, the action, the time since it began and the
console lines since then; when QEMU itself failed, its command line, exit status and output too.

The builders see a machine only through :class:`Witness` (the lifecycle,
:class:`vmtest.vm.lifecycle.VM`, is one); they build errors and never change
the machine's state.
"""

from __future__ import annotations

import time
from typing import Protocol, TypeVar

from vmtest.core.errors import LaunchError, MachineError, QemuFacts, Timeout, VmtestError, describe_exit

E = TypeVar("E", bound=MachineError)


class Witness(Protocol):
    """What an error tells of a machine."""

    name: str
    argv: list[str]

    def console_tail(self, n: int = 20, since: float | None = None) -> list[str]: ...

    def qemu_output(self, limit: int = 3000) -> str: ...


def error(vm: Witness, cls: type[E], action: str, message: str, start: float, qemu: QemuFacts | None = None) -> E:
    """A ``cls`` error naming ``vm``, ``action``, the time since ``start`` and the console tail since then."""
    return cls(vm.name, action, message, time.monotonic() - start, vm.console_tail(since=start), qemu)


def facts(vm: Witness, status: int | None) -> QemuFacts:
    """QEMU's command line, ``status`` and the end of its output, for an error."""
    return QemuFacts(tuple(vm.argv), status, vm.qemu_output())


def qemu_failed(vm: Witness, action: str, message: str, start: float, status: int | None) -> LaunchError:
    """QEMU exited (``status``) or could not be reached during ``action``: a LaunchError with its facts."""
    return error(vm, LaunchError, action, message, start, facts(vm, status))


def attach_failed(vm: Witness, start: float, status: int | None, exc: Exception) -> LaunchError:
    """The channels could not be attached to a QEMU just spawned (``status``: it exited meanwhile)."""
    why = f"{describe_exit(status)} while its channels were attached" if status is not None else str(exc)
    return qemu_failed(vm, "starting QEMU", why, start, status)


def exited(vm: Witness, action: str, start: float, status: int | None) -> LaunchError:
    """QEMU exited when it should have been running."""
    return qemu_failed(vm, action, f"{describe_exit(status)} unexpectedly", start, status)


def stopped(vm: Witness, action: str, start: float, reason: str) -> MachineError:
    """The machine was stopped for good (``abort(reason)``, e.g. by the global timeout)."""
    return error(vm, MachineError, action, f"the machine was stopped: {reason}", start)


def stopped_meanwhile(vm: Witness, action: str, start: float) -> MachineError:
    """The machine was stopped on purpose (shutdown, kill, release) while ``action`` ran."""
    return error(vm, MachineError, action, "the machine was stopped while this was running", start)


def no_shell(vm: Witness, start: float, timeout: float) -> Timeout:
    """The guest's backdoor shell did not answer within ``timeout`` seconds of its launch or reboot."""
    return error(vm, Timeout, "waiting for the backdoor shell", f"no shell within {timeout:.0f}s", start)


def boot_stopped(vm: Witness, start: float, why: str) -> Timeout:
    """The guest stopped before its backdoor shell came (``why``: what its console said, see
    :mod:`vmtest.vm.crash`): no need to wait out the timeout."""
    return error(vm, Timeout, "waiting for the backdoor shell", f"the boot cannot go on: {why}", start)


def not_answering(vm: Witness, command: str, start: float, why: object) -> Timeout:
    """``command`` got no answer from the guest in time (``why``: the backdoor's timeout)."""
    return error(vm, Timeout, f"command {command!r}", f"the guest stopped answering: {why}", start)


def not_powered_off(vm: Witness, start: float, timeout: float) -> Timeout:
    """QEMU did not exit within ``timeout`` seconds of a power-off (it was killed)."""
    message = f"QEMU still running after {timeout:.0f}s; it was killed"
    return error(vm, Timeout, "waiting for power-off", message, start)


def failed_earlier(vm: Witness, failure: VmtestError | None, action: str) -> VmtestError:
    """The error for a later call on a machine that failed (``failure``) and was not started again."""
    assert failure is not None
    if isinstance(failure, MachineError):
        return MachineError(
            vm.name,
            action,
            f"the machine failed earlier and was not started again (call start() to retry): {failure}",
        )
    return failure


def death(vm: Witness, action: str, start: float, status: int | None, aborted: str | None) -> MachineError:
    """QEMU exited when it should have been running: stopped by ``abort(aborted)``, else by itself (``status``)."""
    return stopped(vm, action, start, aborted) if aborted is not None else exited(vm, action, start, status)
