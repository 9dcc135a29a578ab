"""Machines kept after a failed test (``--vm-keep-on-failure``): their registry, and ending them.

A kept machine is a QEMU started through :mod:`vmtest.core.supervisor` whose ticket has a deadline:
it outlives the pytest run, never its deadline. Each is listed in the registry, ``<cache dir>/kept/``,
one JSON file per machine (:class:`Kept`), which ``vmtest ps``, ``vmtest attach`` and ``vmtest kill``
read. The supervisor removes the entry when its machine ends (deadline, power-off or kill).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vmtest.core.errors import ConfigError
from vmtest.core.proc import SUPERVISOR_MARKS, keep_ticket
from vmtest.core.supervisor import remove_paths


def registry(cache_dir: Path) -> Path:
    return cache_dir / "kept"


@dataclass(frozen=True)
class Kept:
    """One kept machine, as the registry holds it."""

    id: str  # NAME-PID: unique among kept machines
    name: str
    test: str
    pid: int  # the supervisor: leader of the machine's process group
    attach: str  # the attach socket (a root shell)
    state_dir: str
    deadline: float  # UNIX time
    switches: list[int] = field(default_factory=list)  # supervisors of its VLAN switches
    remove: list[str] = field(default_factory=list)  # removed when the machine ends
    rmdir: list[str] = field(default_factory=list)  # removed then if empty (its network's directory)

    def left(self) -> float:
        return self.deadline - time.time()


def write_ticket(stdout: Path, deadline: float, remove: list[str], rmdir: list[str] | None = None) -> None:
    """Keep the supervised child whose output is ``stdout`` until ``deadline``; then remove ``remove``
    (and ``rmdir`` if empty)."""
    path = keep_ticket(stdout)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"deadline": deadline, "remove": remove, "rmdir": rmdir or []}))
    tmp.replace(path)  # the supervisor never reads half a ticket


def register(root: Path, kept: Kept) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{kept.id}.json"
    path.write_text(json.dumps(asdict(kept), indent=1))
    return path


def is_supervisor(pid: int) -> bool:
    """True while ``pid`` is a live vmtest supervisor (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(mark in cmdline for mark in SUPERVISOR_MARKS)


def listing(root: Path) -> list[Kept]:
    """The kept machines still running (entries of ended ones are removed)."""
    found = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            kept = Kept(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if is_supervisor(kept.pid):
            found.append(kept)
        else:
            path.unlink(missing_ok=True)
    return found


def find(root: Path, name: str) -> Kept:
    """The kept machine ``name`` (its id, or its node name when that is unambiguous)."""
    kept = listing(root)
    exact = [k for k in kept if k.id == name] or [k for k in kept if k.name == name]
    if len(exact) == 1:
        return exact[0]
    known = ", ".join(k.id for k in kept) or "none"
    if not exact:
        raise ConfigError("machine", name, f"no kept machine of that name (kept: {known})", "see `vmtest ps`")
    raise ConfigError("machine", name, f"several kept machines have that name ({known})", "give its id")


def kill(root: Path, kept: Kept) -> None:
    """End ``kept`` now, and its switches when no other kept machine uses them: each supervisor is asked
    (SIGTERM) to kill its process group and remove its paths, which it does at once; one that does not
    end within seconds gets SIGKILL, and its paths are removed here."""
    others = [k for k in listing(root) if k.id != kept.id]
    _end(kept.pid)
    for pid in kept.switches:
        if not any(pid in k.switches for k in others):
            _end(pid)
    (root / f"{kept.id}.json").unlink(missing_ok=True)
    remove_paths(kept.remove, kept.rmdir)


def _end(pid: int, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_supervisor(pid):
            return
        try:
            os.kill(pid, sig) if sig == signal.SIGTERM else os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while is_supervisor(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # reaped by its parent (init, or the pytest run that is still alive)
