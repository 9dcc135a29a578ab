"""The serial console: read continuously into a log, keep lines for reports.

A daemon thread reads the serial socket, splits it into lines (stripping
carriage returns and terminal escape sequences), logs each line as
``name # line``, appends it to ``console.log`` in the state directory and
keeps the full history in memory (with each line's arrival time) for failure
reports and text waits.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from vmtest.core.threads import signals_to_main

_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL/ST (titles, systemd's OSC 3008)
    r"|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


BEFORE_LINES = 5  # lines quoted from before a call that printed none (context, not the boot's chatter)


def clean_line(raw: bytes) -> str:
    """One console line as text: decoded, without CR and escape sequences."""
    text = raw.decode(errors="replace").replace("\r", "")
    return _ANSI.sub("", text)


class SerialConsole:
    """Owner of the serial console socket of one machine."""

    def __init__(self, name: str, logger: logging.Logger, log_path: Path) -> None:
        self.name = name
        self.logger = logger
        self.log_path = log_path
        self.lines: list[str] = []
        self.times: list[float] = []  # time.monotonic() at which each line of ``lines`` was complete
        self.echo = True
        self._partial = b""
        self._partial_at = 0.0  # when the unfinished line began
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self.closed = False
        self._match_from = 0  # index of the first line wait_for has not consumed
        self._tap: Callable[[bytes], None] | None = None  # console_interact(): raw output as it arrives
        self._readers: list[Callable[[bytes], None]] = []  # subscribe(): every byte, b"" when it closes

    def attach(self, sock: socket.socket) -> None:
        """Start reading ``sock`` in a background thread."""
        self._sock = sock
        self.closed = False
        self._thread = threading.Thread(target=self._read, name=f"vmtest-serial-{self.name}", daemon=True)
        with signals_to_main():
            self._thread.start()

    def _read(self) -> None:
        assert self._sock is not None
        with open(self.log_path, "ab") as log_file:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log_file.write(data)
                log_file.flush()
                tap = self._tap
                if tap is not None:
                    tap(data)
                for reader in self._readers:
                    reader(data)
                self._feed(data)
        for reader in self._readers:
            reader(b"")
        if self._partial:
            self._feed(b"\n")
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _feed(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self._partial + data
        *complete, partial = buf.split(b"\n")
        if not self._partial or complete:
            self._partial_at = now
        self._partial = partial
        new = [clean_line(raw) for raw in complete]
        with self._cond:
            self.lines.extend(new)
            self.times.extend([now] * len(new))
            self._cond.notify_all()
        if self.echo:
            for line in new:
                self.logger.info("%s # %s", self.name, line)

    def preload(self, data: bytes) -> None:
        """Put ``data`` (a console log) into the history before what the machine prints, without logging
        it: a restored machine's console then holds the boot that made its snapshot."""
        lines = [clean_line(raw) for raw in data.split(b"\n")]
        if lines and not lines[-1]:
            lines.pop()
        with self._cond:
            self.lines[:0] = lines
            self.times[:0] = [0.0] * len(lines)
            self._match_from += len(lines) if self._match_from else 0
            self._cond.notify_all()

    def tail(self, n: int = 20, since: float | None = None) -> list[str]:
        """The last ``n`` complete lines (plus the unfinished one, if any).

        With ``since`` (a :func:`time.monotonic` time): only the lines printed since then — what matters
        for a call that began at ``since`` — or, when there are none, a note saying so and the last lines
        before it.
        """
        with self._cond:
            first = 0 if since is None else bisect_left(self.times, since)
            lines = self.lines[max(first, len(self.lines) - n) :]
            fresh = since is None or self._partial_at >= since
            partial = clean_line(self._partial) if self._partial and fresh else None
        if partial is not None:
            lines = (lines + [partial])[-n:]
        if since is not None and not lines:
            before = self.tail(min(n, BEFORE_LINES))
            return ["(no console output since this call began; the last lines before it:)", *before] if before else []
        return lines

    def wait_for(self, pattern: re.Pattern[str], timeout: float | None) -> re.Match[str] | None:
        """The first line since the last match (or the start) that ``pattern`` matches.

        Lines printed before the call count too, and no line is ever skipped:
        each call resumes after the previously matched line. Returns None on
        timeout or when the console closed without a match.
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                while self._match_from < len(self.lines):
                    line = self.lines[self._match_from]
                    self._match_from += 1
                    match = pattern.search(line)
                    if match:
                        return match
                if self.closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left if left is None else min(left, 1.0))

    def subscribe(self, reader: Callable[[bytes], None]) -> None:
        """Hand every byte read from now on to ``reader`` as well, and ``b""`` when the console closes (the
        serial shell of a foreign machine reads the same connection: QEMU's chardev takes one client)."""
        self._readers.append(reader)

    def tap(self, receiver: Callable[[bytes], None] | None) -> None:
        """Hand every byte the console prints from now on to ``receiver`` too (None: stop)."""
        self._tap = receiver

    def write(self, data: bytes) -> None:
        if self._sock is None:
            raise OSError("serial console not connected")
        self._sock.sendall(data)

    def detach(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock = None
        self._thread = None
