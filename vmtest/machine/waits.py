"""Waiting for things in the guest: files, TCP ports, unix sockets (serial-console lines:
:mod:`vmtest.machine.serial`)."""

from __future__ import annotations

import shlex

from vmtest.machine.commands import DEFAULT_TIMEOUT, Commands

LOCAL_ADDRS = ("localhost", "127.0.0.1", "::1")
# local addresses of a listener that accepts connections to localhost: wildcard or loopback
LISTEN_LOCAL = r"\*|0\.0\.0\.0|127\.[0-9.]+|\[::\]|\[::1\]|\[::ffff:127\.[0-9.]+\]"


class Waits:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.vm = commands.vm

    def _wait(self, section: str, what: str, command: str, timeout: float, why: str, success: bool = True) -> None:
        """Repeat the guest ``command`` until it exits 0 (non-zero: ``success=False``), in the log section
        ``section``; a timeout names ``what`` and ``why`` (what the last try found)."""
        with self.vm.nested(section):
            self.commands.wait_until(
                what, lambda _: (self.commands.execute(command)[0] == 0) == success, timeout, lambda: why
            )

    def wait_for_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._wait(
            f"waiting for file {path}",
            f"waiting for file {path}",
            f"test -e {shlex.quote(path)}",
            timeout,
            "it does not exist",
        )

    @staticmethod
    def _port_check(port: int, addr: str) -> str:
        """Whether something accepts TCP connections on ``addr:port`` (a guest command). On the guest itself
        (localhost) the kernel's table of listening sockets is read instead of connecting: a probe's
        connection would be accepted by a one-shot listener (``nc -l``) and close it before the test's
        own client comes (seen: a refused client 0.1 s after the wait passed)."""
        if addr in LOCAL_ADDRS:
            return (
                f"ss -Htln 'sport = :{int(port)}' | awk '{{print $4}}' | "
                f"grep -Eq '^({LISTEN_LOCAL})(%[^:]*)?:{int(port)}$'"
            )
        return f"nc -z -w 1 {shlex.quote(addr)} {int(port)}"

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        self._wait_port(port, addr, timeout, opened=True)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        self._wait_port(port, addr, timeout, opened=False)

    def _wait_port(self, port: int, addr: str, timeout: float, opened: bool) -> None:
        goal = "open" if opened else "close"
        self._wait(
            f"waiting for TCP port {port} on {addr}" + ("" if opened else " to close"),
            f"waiting for TCP port {addr}:{port} to {goal}",
            self._port_check(port, addr),
            timeout,
            "nothing accepts connections there" if opened else "it still accepts connections",
            success=opened,
        )

    @staticmethod
    def _unix_socket_check(path: str, is_datagram: bool) -> str:
        """Whether a unix socket is bound at ``path`` and, for a stream or seqpacket one, listening (a guest
        command). It reads the kernel's table (/proc/net/unix: Flags 00010000 is a listening socket, Type
        0002 a datagram one) rather than connecting, for the reason given in :meth:`_port_check`."""
        match = '$5 == "0002"' if is_datagram else '($5 == "0001" || $5 == "0005") && $4 == "00010000"'
        return f"awk -v p={shlex.quote(path)} '$8 == p && {match} {{ found = 1 }} END {{ exit !found }}' /proc/net/unix"

    def wait_for_open_unix_socket(self, path: str, is_datagram: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._wait(
            f"waiting for unix socket {path}",
            f"waiting for unix socket {path}",
            self._unix_socket_check(path, is_datagram),
            timeout,
            "nothing listens there",
        )
