"""The local port probe reads the listening sockets instead of connecting: a one-shot listener is not
consumed by the wait (real ss and sh on the host; the guest has the same iproute2)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import pytest

from vmtest.machine.waits import Waits

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="no ss on this host")


def probe(port: int, addr: str = "localhost") -> bool:
    return subprocess.run(["sh", "-c", Waits._port_check(port, addr)], check=False).returncode == 0


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1"])
def test_a_one_shot_listener_survives_the_probe(bind: str) -> None:
    server = socket.socket()
    server.bind((bind, 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[bool] = []
    thread = threading.Thread(target=lambda: accepted.append(bool(server.accept())), daemon=True)
    thread.start()
    try:
        assert probe(port)
        assert accepted == []  # the probe did not connect
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the test's own client gets in
        thread.join(5)
        assert accepted == [True]
    finally:
        server.close()
    assert not probe(port)


def test_a_listener_on_another_address_is_not_open_on_localhost() -> None:
    assert "nc -z" in Waits._port_check(80, "192.168.1.2")  # a remote address: a real connection
    assert "ss -Htln" in Waits._port_check(80, "localhost")
