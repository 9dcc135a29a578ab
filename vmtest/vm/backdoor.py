"""The backdoor shell: run commands in the guest over a virtio serial port.

The guest side is ``image/guest/backdoor``, a bash loop on the port named
``org.vmtest.backdoor`` (:data:`vmtest.core.contract.BACKDOOR_PORT`).
A request is ``run <id> <command>\\n`` with the command escaped for
``printf %b`` (see :func:`escape_command`); the reply is a header
``\\x02vmtest-out <id> <status> <nbytes> <raw|b64> <errbytes> <raw|b64>\\n``
followed by exactly ``nbytes`` of the command's stdout and ``errbytes`` of its
stderr. Ids are random per request and the payloads are length-prefixed, so
binary output, output without a trailing newline and output that imitates a
header cannot confuse the reader.

Timeouts are enforced from here: when one expires we send ``kill <id>``, the
guest kills the command's process group and answers with status 124.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pexpect
import pexpect.fdpexpect

READY = re.compile(rb"\x02vmtest-ready ([^\n]*)\n")
KILLED_STATUS = 124
KILL_GRACE = 10.0
OUTPUT_STALL = 60.0  # seconds without a byte of a command's output before the guest counts as gone


_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~")


def escape_command(command: str) -> bytes:
    """``command`` as one line of printable ASCII that ``printf %b`` turns back into it.

    Every byte but printable ASCII (and space and backslash) becomes ``\\0ooo``.
    """
    if "\0" in command:
        raise ValueError("a shell command cannot contain a NUL character")
    out = bytearray()
    for byte in command.encode():
        if byte in _PLAIN:
            out.append(byte)
        else:
            out += b"\\0%03o" % byte
    return bytes(out)


def encode_run(request_id: str, command: str) -> bytes:
    """The ``run`` request line for ``command``."""
    return b"run " + request_id.encode() + b" " + escape_command(command) + b"\n"


def encode_kill(request_id: str) -> bytes:
    return f"kill {request_id}\n".encode()


def reply_header(request_id: str) -> re.Pattern[bytes]:
    """The regex of the reply header for ``request_id``: groups status, nbytes, encoding, errbytes,
    its encoding."""
    return re.compile(
        rb"\x02vmtest-out " + re.escape(request_id.encode()) + rb" (\d+) (\d+) (raw|b64) (\d+) (raw|b64)\n"
    )


def decode_payload(payload: bytes, encoding: bytes) -> bytes:
    return base64.b64decode(payload) if encoding == b"b64" else payload


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Result:
    status: int
    output: bytes
    elapsed: float  # from sending the command to its reply (never a boot)
    killed: bool = False
    stderr: bytes = b""


class BackdoorClosed(Exception):
    """The backdoor's socket closed (QEMU exited)."""


class BackdoorTimeout(Exception):
    """The guest did not answer at all (not even to ``kill``)."""


class GuestCrashed(BackdoorTimeout):
    """The guest's kernel crashed while a command waited, or the guest stopped before its shell came (a
    panic, a boot loader refusing the kernel); the message quotes the console."""


class Backdoor:
    """Client of the guest's backdoor loop over one connected socket (pexpect).

    One command at a time per machine (a lock serialises callers); commands
    on different machines run concurrently.
    """

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        logger: logging.Logger,
        crash_watch: Callable[[], Callable[..., str | None]] | None = None,
    ) -> None:
        self.name = name
        self._crash_watch = crash_watch  # a new crash check per command (vmtest.vm.crash.watcher)
        self.logger = logger
        self._sock = sock
        self._spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=None, maxread=65536)
        self._lock = threading.Lock()
        self.kernel_release: str | None = None
        self.setup_done = False  # the banner said the per-run set-up had completed

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> str:
        """Wait for the ready banner; returns the guest's kernel release (``setup_done``: the banner said the
        per-run set-up completed). A guest that stops meanwhile (a
        kernel panic, a boot loader refusing the kernel: ``crash_watch``) ends the wait at once with
        :class:`GuestCrashed`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            stopped = self._crash_watch() if self._crash_watch is not None else None
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackdoorTimeout("waiting for the backdoor shell")
                try:
                    self._spawn.expect(READY, timeout=min(left, 1.0))
                    break
                except pexpect.TIMEOUT:
                    why = stopped() if stopped is not None else None
                    if why is not None:
                        raise GuestCrashed(why) from None
                    if not alive():
                        raise BackdoorClosed("QEMU exited") from None
                except (pexpect.EOF, OSError):
                    raise BackdoorClosed("the backdoor's socket closed") from None
            words = self._spawn.match.group(1).decode(errors="replace").split()
            self.kernel_release = words[0] if words else ""
            self.setup_done = "setup-done" in words[1:]
            return self.kernel_release

    def run(self, command: str, timeout: float) -> Result:
        """Run ``command`` in the guest; after ``timeout`` seconds it is killed (status 124). A crash of
        the guest kernel meanwhile (``crash_watch``) ends the wait at once with :class:`GuestCrashed`."""
        with self._lock:
            crashed = self._crash_watch() if self._crash_watch is not None else None
            rid = new_id()
            header = reply_header(rid)
            start = time.monotonic()
            self._send(encode_run(rid, command))
            killed = False
            try:
                self._expect(header, timeout, crashed)
            except pexpect.TIMEOUT:
                killed = True
                self._send(encode_kill(rid))
                try:
                    self._spawn.expect(header, timeout=KILL_GRACE)
                except pexpect.TIMEOUT:
                    raise BackdoorTimeout(
                        f"the guest did not answer within {KILL_GRACE:.0f}s after being asked to kill the command"
                    ) from None
                except (pexpect.EOF, OSError):
                    raise BackdoorClosed("the backdoor's socket closed") from None
            except (pexpect.EOF, OSError):
                why = crashed(final=True) if crashed is not None else None  # QEMU may exit at a panic's reboot
                if why is not None:
                    raise GuestCrashed(why) from None
                raise BackdoorClosed("the backdoor's socket closed") from None
            match = self._spawn.match
            status, size, encoding = int(match.group(1)), int(match.group(2)), match.group(3)
            err_size, err_encoding = int(match.group(4)), match.group(5)
            output = decode_payload(self._read_exact(size), encoding)
            stderr = decode_payload(self._read_exact(err_size), err_encoding)
            return Result(status, output, time.monotonic() - start, killed, stderr)

    def _expect(
        self, header: bytes | re.Pattern[bytes], timeout: float, crashed: Callable[..., str | None] | None
    ) -> None:
        """``expect(header)`` for up to ``timeout`` seconds, asking ``crashed`` twice a second."""
        if crashed is None:
            self._spawn.expect(header, timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                self._spawn.expect(header, timeout=max(0.0, min(left, 0.5)))
                return
            except pexpect.TIMEOUT:
                why = crashed()
                if why is not None:
                    raise GuestCrashed(why) from None
                if left <= 0.5:
                    raise

    def _read_exact(self, size: int, stall: float = OUTPUT_STALL) -> bytes:
        """Exactly ``size`` bytes following the last match (pexpect's buffer first).

        The output is streaming once its header arrived; however slow a loaded host makes it, only
        ``stall`` seconds without a single byte mean the guest stopped answering.
        """
        buf = self._spawn.buffer
        data = bytearray(buf[:size])
        self._spawn.buffer = buf[size:]
        deadline = time.monotonic() + stall
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackdoorTimeout(f"reading {size} bytes of output: got {len(data)}, then nothing for {stall:g}s")
            try:
                chunk = self._spawn.read_nonblocking(min(65536, size - len(data)), timeout=left)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError):
                raise BackdoorClosed("the backdoor's socket closed") from None
            data += chunk
            deadline = time.monotonic() + stall
        return bytes(data)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise BackdoorClosed(f"the backdoor's socket closed ({exc})") from None

    def send_only(self, command: str) -> None:
        """Send a command without waiting for its reply (for poweroff/reboot)."""
        with self._lock:
            self._send(encode_run(new_id(), command))

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
