"""Emptying TCG's translation cache through QEMU's gdbstub (vmtest.vm.translations), against a fake stub
speaking the GDB remote protocol on a unix socket as QEMU 7.2's does (the real one: the Secure Boot
snapshot test in tests/integration/test_efi.py)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from vmtest.vm import translations

LOGGER = logging.getLogger("test")


class FakeQemu:
    """A monitor whose ``gdbserver`` command opens a fake stub at the given path."""

    def __init__(self, answer_step: bool = True) -> None:
        self.answer_step = answer_step
        self.human_lines: list[str] = []
        self.commands: list[str] = []
        self.status = "running"
        self.received = b""
        self.thread: threading.Thread | None = None
        self.events: list[dict] = []

    def human(self, command_line: str) -> str:
        self.human_lines.append(command_line)
        if command_line.startswith("gdbserver unix:"):
            path = command_line.split(":", 1)[1].split(",", 1)[0]
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(1)
            self.thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
            self.thread.start()
        return ""

    def _serve(self, server: socket.socket) -> None:
        conn, _ = server.accept()
        server.close()
        with conn:
            self.status = "paused"
            conn.sendall(b"$T02thread:01;#04")  # the pause of the connection, unasked
            while b"$s#73" not in self.received:
                self.received += conn.recv(100)
            if not self.answer_step:
                self.status = "debug"
                time.sleep(2)
                return
            conn.sendall(b"+$T05thread:01;#07")
            self.status = "debug"
            while b"$D#44" not in self.received:
                self.received += conn.recv(100)
            self.status = "running"
            conn.sendall(b"+$OK#9a")
            time.sleep(0.2)

    def command(self, name: str, /, **args: object) -> object:
        self.commands.append(name)
        if name == "query-status":
            return {"status": self.status}
        if name == "cont":
            self.status = "running"
        return {}

    def wait_event(self, accept, timeout, keep=False):  # noqa: ANN001
        for event in self.events:
            if accept(event):
                return event
        time.sleep(min(timeout, 0.05))
        return None


def test_the_socket_fits_where_the_machines_sockets_live() -> None:
    from vmtest.vm.paths import SOCKET_ROOM

    assert len(f"/{translations.SOCKET}") <= SOCKET_ROOM  # (a unix socket's path is limited to 107 bytes)


def test_packets_are_framed_with_their_checksum() -> None:
    assert translations.packet("s") == b"$s#73"
    assert translations.packet("D") == b"$D#44"
    assert translations.packet("OK") == b"$OK#9a"


def test_one_step_then_detach_and_the_stub_is_stopped(tmp_path: Path) -> None:
    qemu = FakeQemu()
    path = tmp_path / "gdb.sock"
    assert translations.flush(qemu, path, LOGGER)
    assert qemu.received.index(b"$s#73") < qemu.received.index(b"$D#44")  # the step before the detach
    assert qemu.received.split(b"$D#44")[0].count(b"+") == 2  # the two stop reports acknowledged
    assert qemu.human_lines == [f"gdbserver unix:{path},server=on,wait=off", "gdbserver none"]
    assert "cont" not in qemu.commands and qemu.status == "running"  # the detach resumed it
    assert not path.exists()


def test_a_stub_that_stops_answering_costs_the_timeout_and_the_guest_runs_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(translations, "TIMEOUT", 0.5)
    qemu = FakeQemu(answer_step=False)
    start = time.monotonic()
    assert not translations.flush(qemu, tmp_path / "gdb.sock", LOGGER)
    assert time.monotonic() - start < 2
    assert qemu.human_lines[-1] == "gdbserver none"
    assert qemu.commands[-1] == "cont" and qemu.status == "running"  # resumed by vmtest


def test_a_qemu_without_gdbstub_is_left_alone(tmp_path: Path) -> None:
    class NoStub(FakeQemu):
        def human(self, command_line: str) -> str:
            raise RuntimeError("QMP human-monitor-command failed: gdbstub not compiled in")

    qemu = NoStub()
    assert not translations.flush(qemu, tmp_path / "gdb.sock", LOGGER)
    assert qemu.commands == []  # nothing was paused, nothing resumed


def _event(name: str, at: float) -> dict:
    return {"event": name, "timestamp": {"seconds": int(at), "microseconds": int(at % 1 * 1e6)}}


def test_after_reset_waits_for_a_new_reset_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(translations, "RESET_WAIT", 0.3)
    asked = time.time()
    qemu = FakeQemu()
    qemu.events = [_event("RESET", asked - 5)]  # an earlier reboot's, still queued
    assert not translations.after_reset(qemu, tmp_path / "gdb.sock", asked, lambda: True, LOGGER)
    assert qemu.human_lines == []  # not flushed on the old event
    qemu.events.append(_event("RESET", asked + 0.5))
    assert translations.after_reset(qemu, tmp_path / "gdb.sock", asked, lambda: True, LOGGER)


@pytest.mark.parametrize("why", ["powered off", "QEMU ended"])
def test_after_reset_gives_up_at_a_power_off_or_a_dead_qemu(tmp_path: Path, why: str) -> None:
    asked = time.time()
    qemu = FakeQemu()
    if why == "powered off":
        qemu.events = [_event("SHUTDOWN", asked + 0.1)]
    start = time.monotonic()
    assert not translations.after_reset(qemu, tmp_path / "gdb.sock", asked, lambda: why != "QEMU ended", LOGGER)
    assert time.monotonic() - start < 1 and qemu.human_lines == []
