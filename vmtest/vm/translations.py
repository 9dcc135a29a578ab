"""Emptying TCG's cache of translated guest code after a reset.

Under TCG, QEMU keeps the code it translated for the guest across a reset of
the machine. A page that held code before the reset and holds data after it
stays a "code page" as long as a translation from it is cached, and every
write to it then takes QEMU's slow path (a lookup of the page's translations
per store). After a snapshot restore this bit hard: a Secure Boot machine's
first reboot took 54 s instead of 15 s, because OVMF's stack landed on a page
the restored guest had run code from, and OVMF hashes the kernel (8 MB of
SHA-256, a store to the stack every few instructions) before starting it.
(Where the guest's code sat is fixed by the snapshot, so it happened on every
restore; a cold boot places it differently each time.)

QEMU 7.2 has no monitor command that empties the cache; switching a CPU's
single-stepping on and off does (``cpu_single_step`` flushes every
translation). So :func:`flush` starts QEMU's gdbstub on a socket in the
machine's socket directory (:data:`SOCKET`), asks it for one single step (the guest executes
one instruction, the reset vector's first), detaches, which resumes the
guest, and stops the gdbstub. The whole exchange takes a few milliseconds;
the guest is paused meanwhile. It never fails a reboot: whatever goes wrong
is logged, and the guest is resumed if the gdbstub left it stopped.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.vm.channels import Monitor

TIMEOUT = 5.0  # for the whole exchange (a few ms on an idle host)
SOCKET = "gdb.sock"  # the gdbstub's, beside the machine's other sockets, only while a reboot empties the cache


def packet(body: str) -> bytes:
    """``body`` framed as a GDB remote-protocol packet: ``$body#checksum``."""
    return f"${body}#{sum(body.encode()) % 256:02x}".encode()


class Stub:
    """A connection to a gdbstub: packets out, packets in (acknowledged; what follows one is kept)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.data = b""

    def send(self, body: str) -> None:
        self.sock.sendall(packet(body))

    def receive(self) -> str:
        """The body of the next packet from the stub (acknowledgements before it skipped)."""
        while True:
            start = self.data.find(b"$")
            end = self.data.find(b"#", start) if start >= 0 else -1
            if end >= 0 and len(self.data) >= end + 3:
                body, self.data = self.data[start + 1 : end], self.data[end + 3 :]
                self.sock.sendall(b"+")
                return body.decode(errors="replace")
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the gdbstub did not answer")
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the gdbstub closed the connection")
            self.data += chunk

    def until(self, wanted: Callable[[str], bool]) -> None:
        """Read packets until one is ``wanted`` (stop reports before it are skipped; an error reply
        ``E..`` ends the exchange)."""
        while not wanted(reply := self.receive()):
            if reply.startswith("E") or reply == "":
                raise ConnectionError(f"the gdbstub answered {reply!r}")


def flush(monitor: Monitor, path: Path, logger: logging.Logger) -> bool:
    """Empty the translation cache of the QEMU behind ``monitor`` through a gdbstub on socket ``path``;
    True when it was done. Call it while the guest is in its firmware (just after a reset)."""
    deadline = time.monotonic() + TIMEOUT
    path.unlink(missing_ok=True)
    try:
        monitor.human(f"gdbserver unix:{path},server=on,wait=off")
    except Exception as exc:  # QMP refused (a QEMU without gdbstub): nothing was paused
        logger.debug("translation cache not emptied: %s", exc)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(path))  # (QEMU pauses the guest for a debugger)
            # The stub reports the pause of the connection on its own (a stop with signal 2); a request
            # sent before that report is not served as asked. The step's stop comes with SIGTRAP (5).
            stub = Stub(sock, deadline)
            stub.until(lambda reply: reply.startswith(("T", "S")))
            stub.send("s")  # one single step: the cache is emptied on and off
            stub.until(lambda reply: reply.startswith(("T05", "S05")))
            stub.send("D")  # detach: the guest runs on
            stub.until(lambda reply: reply == "OK")
        return True
    except OSError as exc:  # (ConnectionError and TimeoutError are OSErrors)
        logger.info("translation cache not emptied after the reset (%s); the boot goes on", exc)
        return False
    finally:
        _stop_gdbstub(monitor, path, logger)


def _stop_gdbstub(monitor: Monitor, path: Path, logger: logging.Logger) -> None:
    try:
        monitor.human("gdbserver none")
        if monitor.command("query-status").get("status") in ("debug", "paused"):
            monitor.command("cont")  # the exchange broke off with the guest stopped
    except Exception as exc:  # QEMU gone meanwhile: the wait for the shell reports that
        logger.debug("gdbstub not stopped: %s", exc)
    path.unlink(missing_ok=True)


RESET_WAIT = 60.0  # an asked-for reboot's shutdown takes 2-3 s quiet; past this the flush is skipped


def after_reset(monitor: Monitor, path: Path, since: float, alive: Callable[[], bool], logger: logging.Logger) -> bool:
    """Wait (up to :data:`RESET_WAIT`) for the guest's reset after ``since`` (``time.time()`` when the reboot
    was asked for; older events stay where they are), then :func:`flush`; True when flushed. Gives up
    at once when QEMU ends or the guest powers off instead."""

    def news(event: dict[str, Any]) -> bool:
        stamp = event.get("timestamp") or {}
        at = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        return event.get("event") in ("RESET", "SHUTDOWN") and at >= since

    deadline = time.monotonic() + RESET_WAIT
    while time.monotonic() < deadline and alive():
        event = monitor.wait_event(news, 0.5, keep=True)
        if event is not None:
            return event["event"] == "RESET" and flush(monitor, path, logger)
    return False
