"""The host side of the guest agent over a held connection (a socket pair stands in for QEMU's port)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from vmtest.vm.agent import AgentError, GuestAgent


def fake_agent(sock: socket.socket, seen: list[str]) -> None:
    """Answer guest-sync with its id and guest-info with a version, one JSON line each, until EOF."""
    buf = b""
    while chunk := sock.recv(4096):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            request = json.loads(line)
            seen.append(request["execute"])
            if request["execute"] == "guest-sync":
                answer = {"return": request["arguments"]["id"]}
            elif request["execute"] == "guest-info":
                answer = {"return": {"version": "7.2"}}
            else:
                answer = {"error": {"class": "CommandNotFound", "desc": f"{request['execute']} has not been found"}}
            sock.sendall(b"\xff" + json.dumps(answer).encode() + b"\n")


def test_calls_go_over_the_held_connection_and_skip_stale_bytes(tmp_path: Path) -> None:
    host, guest = socket.socketpair()
    guest.sendall(b'{"return": 12345}\n{"return": {"stale": true}}\n')  # an earlier client's answers, unread
    seen: list[str] = []
    thread = threading.Thread(target=fake_agent, args=(guest, seen), daemon=True)
    agent = GuestAgent.hold(tmp_path / "qga.sock", host)  # (no socket there: a new connection would fail)
    thread.start()

    assert agent.call("guest-info", timeout=5) == {"version": "7.2"}
    assert agent.call("guest-info", timeout=5) == {"version": "7.2"}
    with pytest.raises(AgentError, match="guest-nope: CommandNotFound"):
        agent.call("guest-nope", timeout=5)
    assert seen == ["guest-sync", "guest-info"] * 2 + ["guest-sync", "guest-nope"]

    agent.close()  # the connection ends: the agent sees EOF
    thread.join(timeout=5)
    assert not thread.is_alive()
    agent.close()  # twice is fine
    with pytest.raises(AgentError, match="cannot talk to the guest agent"):
        agent.call("guest-info", timeout=1)  # no held connection, and nothing listens at the path
    guest.close()
