"""Waiting for QEMU's QMP greeting (vmtest.vm.qemu_backend.await_greeting), on real unix sockets."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from vmtest.vm.channels import ChannelError
from vmtest.vm.qemu_backend import await_greeting


@pytest.fixture
def sock_path():
    with tempfile.TemporaryDirectory(prefix="vt-", dir="/tmp") as d:
        yield Path(d) / "qmp.sock"


def test_a_listener_that_never_serves_fails_after_the_timeout(sock_path: Path) -> None:
    """QEMU blocked before its main loop: the socket listens (connections wait in its backlog), no greeting."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    try:
        start = time.monotonic()
        with pytest.raises(ChannelError, match="accepted no QMP connection .* within 1s"):
            await_greeting(sock_path, lambda: True, timeout=1)
        assert 0.9 < time.monotonic() - start < 5
    finally:
        listener.close()


def test_a_greeting_ends_the_wait(sock_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        time.sleep(0.2)
        conn.sendall(b'{"QMP": {"version": {}}}\r\n')
        conn.close()

    server = threading.Thread(target=serve)
    server.start()
    try:
        await_greeting(sock_path, lambda: True, timeout=10)
    finally:
        server.join()
        listener.close()


def test_a_dead_qemu_is_named(sock_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    alive = iter([True, True, False])
    try:
        with pytest.raises(ChannelError, match="QEMU exited before it sent its QMP greeting"):
            await_greeting(sock_path, lambda: next(alive, False), timeout=10)
    finally:
        listener.close()
