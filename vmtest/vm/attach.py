"""A person's terminal joined to a guest: ``vmtest attach``, ``shell_interact()``, ``console_interact()``.

The root shell for people runs on the guest's virtio console (``/dev/hvc0``, a login shell that
``vmtest-attach.service`` starts on it); QEMU serves it on ``attach.sock`` in the machine's state
directory. It is not the backdoor (a virtio serial port), so a shell left open never blocks the
test's commands.
:func:`pump` copies this terminal's keys to the guest and the guest's output to this terminal (raw
mode on a terminal) until the escape key, Ctrl-], or until the guest side closes.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ESCAPE = b"\x1d"  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd`` in raw mode while inside (nothing changes when it is not a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def pump(remote: int, send: Callable[[bytes], None], stdin: int | None = None, stdout: int | None = None) -> str:
    """Copy ``stdin`` to ``send`` and what arrives on fd ``remote`` to ``stdout`` until the escape key
    (returns ``"escape"``), the end of ``stdin`` (``"eof"``) or the remote side closing (``"closed"``)."""
    fd_in = sys.stdin.fileno() if stdin is None else stdin
    fd_out = sys.stdout.fileno() if stdout is None else stdout
    with raw_terminal(fd_in):
        while True:
            ready, _, _ = select.select([fd_in, remote], [], [])
            if remote in ready:
                data = os.read(remote, 65536)
                if not data:
                    return "closed"
                os.write(fd_out, data)
            if fd_in in ready:
                keys = os.read(fd_in, 4096)
                if not keys:
                    return "eof"
                if ESCAPE in keys:
                    send(keys.split(ESCAPE, 1)[0])
                    return "escape"
                send(keys)


def connect(path: Path) -> socket.socket:
    """A connection to a machine's attach socket (an OSError naming the path when there is none)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def attach_shell(path: Path, title: str) -> str:
    """A root shell of the machine behind ``path`` on this terminal, until Ctrl-] (or the guest closes it)."""
    with connect(path) as sock:
        sys.stdout.write(f"{title}: root shell ({ESCAPE_NAME} leaves it; the machine keeps running)\r\n")
        sys.stdout.flush()
        sock.sendall(b"\r")  # the shell prints a fresh prompt
        how = pump(sock.fileno(), sock.sendall)
    sys.stdout.write("\r\n")
    sys.stdout.flush()
    return how
