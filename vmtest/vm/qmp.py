"""QMP: QEMU's control channel, through ``qemu.qmp``'s synchronous client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

__all__ = ["Monitor", "QMPError"]


class Monitor:
    """A thread-safe QMP connection to one QEMU."""

    def __init__(self, path: Path) -> None:
        self._qmp = QEMUMonitorProtocol(str(path))
        self._lock = threading.Lock()
        self.greeting: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []  # events drained by take_resets(), for wait_event
        self._resets = 0  # RESET events seen (by either) since the last take_resets()

    def connect(self) -> None:
        """Connect and negotiate capabilities (the greeting proves QEMU is up)."""
        with self._lock:
            self.greeting = self._qmp.connect(negotiate=True)

    def command(self, command_name: str, /, **args: Any) -> Any:
        """Run a QMP command and return its ``return`` value (raises on QMP errors)."""
        with self._lock:
            return self._run(command_name, args)

    def _run(self, command_name: str, args: dict[str, Any]) -> Any:
        response = self._qmp.cmd_raw(command_name, args or None)
        if "error" in response:
            raise QMPError(f"QMP {command_name} failed: {response['error'].get('desc', response['error'])}")
        return response.get("return")

    def human(self, command_line: str) -> str:
        """Run a human-monitor (HMP) command and return its text output."""
        return str(self.command("human-monitor-command", **{"command-line": command_line}))

    def wait_event(
        self, accept: Callable[[dict[str, Any]], bool], timeout: float, keep: bool = False
    ) -> dict[str, Any] | None:
        """The first event (already queued or new) for which ``accept(event)`` is true, or None. ``keep``:
        leave the queue as it was, the event in it (a look that must not take it from a later wait)."""
        import time

        deadline = time.monotonic() + timeout
        with self._lock:
            for i, queued in enumerate(self._pending):
                if accept(queued):
                    return queued if keep else self._pending.pop(i)
            if not keep:
                self._pending.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._lock:
                try:
                    event = self._qmp.pull_event(wait=min(left, 0.5))
                except Exception:  # asyncio.TimeoutError: nothing arrived in this slice
                    event = None
                if event is not None and event.get("event") == "RESET":
                    self._resets += 1
                if event is not None and keep:
                    self._pending.append(event)
            if event is not None and accept(event):
                return event

    def take_resets(self) -> int:
        """How many guest resets (``RESET`` events) arrived since the last call, whether or not
        :meth:`wait_event` returned them; the events stay queued for :meth:`wait_event`."""
        with self._lock:
            try:
                self._run("query-status", {})  # a round trip: events QEMU sent before it are queued now
                events = self._qmp.get_events(wait=False)
            except Exception:  # a dead QEMU: no events
                events = []
            resets = self._resets + sum(1 for e in events if e.get("event") == "RESET")
            self._resets = 0
            self._pending.extend(events)
            del self._pending[:-1000]
            return resets

    def close(self) -> None:
        with self._lock:
            try:
                self._qmp.close()
            except Exception:  # closing a connection to a dead QEMU may raise anything
                pass
