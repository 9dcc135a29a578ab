"""A shell logged in on the serial console, driven with pexpect: commands for guests without the backdoor.

The serial console's reader (:class:`vmtest.vm.console.SerialConsole`) hands
every byte it reads to a :class:`ConsoleSpawn` too, a pexpect spawn over that
feed (QEMU's chardev takes one client, so the console log and the shell
share one connection). :meth:`SerialShell.wait_ready` logs in the way
labgrid's ShellDriver does: it answers the login and password prompts, sends
a newline when the console stays idle (a prompt printed before we looked,
or lost among boot messages), and once a shell prompt shows it sets the
session up in one line: ``stty -echo -opost`` (nothing we type comes back,
output bytes pass unchanged), no line editing, a private prompt, and the
helper function that frames each command (:mod:`vmtest.vm.serialframe`).
A command that outlives its timeout is interrupted with Ctrl-C; the shell is
then proven usable again by a marker it must echo before the next command.

It serves the lifecycle as the machine's shell (the same calls as
:class:`vmtest.vm.backdoor.Backdoor`), so every verb built on commands works.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pexpect
from pexpect.spawnbase import SpawnBase

from vmtest.vm.backdoor import BackdoorClosed, BackdoorTimeout, Result
from vmtest.vm.serialframe import Frame, FrameCorrupted, command_lines, helper_definition, parse_frame

IDLE = 3.0  # seconds of console silence before a newline is sent while logging in
SETUP_WAIT = 10.0  # seconds for the set-up line's answer before it is sent again
KILLED_STATUS = 124
INTERRUPT_GRACE = 10.0  # seconds for the shell to come back after Ctrl-C
BUFFER_LIMIT = 64 << 20  # console bytes kept for the shell at most (older ones are dropped)


@dataclass(frozen=True)
class Login:
    """How to log in (the ``image.*`` options of a foreign machine)."""

    user: str = "root"
    password: str | None = None
    login_prompt: str = r"login: ?\Z"
    password_prompt: str = r"[Pp]assword: ?\Z"
    shell_prompt: str = r"[#$] ?\Z"
    base64_output: bool = False


class LoginFailed(Exception):
    """The guest refused the login, or wanted a password none was given for (the reason is the message)."""


class ConsoleSpawn(SpawnBase):  # type: ignore[misc]  # pexpect has no type hints
    """A pexpect spawn over bytes fed by the console reader thread (no child process, no file descriptor)."""

    def __init__(self) -> None:
        super().__init__(timeout=None, maxread=65536)
        self._cond = threading.Condition()
        self._data = bytearray()
        self._closed = False
        self.received = 0  # bytes fed so far

    def feed(self, data: bytes) -> None:
        """Called from the console's reader thread; ``b""`` means the console closed."""
        with self._cond:
            if not data:
                self._closed = True
            else:
                self._data += data
                self.received += len(data)
                if len(self._data) > BUFFER_LIMIT:
                    del self._data[: len(self._data) - BUFFER_LIMIT]
            self._cond.notify_all()

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if timeout == -1:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._data:
                if self._closed:
                    self.flag_eof = True
                    raise pexpect.EOF("the serial console closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise pexpect.TIMEOUT("no console output")
                self._cond.wait(left)
            chunk = bytes(self._data[:size])
            del self._data[:size]
        return chunk

    def drop_pending(self) -> None:
        """Forget what arrived and was not read yet (before a command: its frame is all that matters)."""
        with self._cond:
            self._data.clear()
        self.buffer = b""


class SerialShell:
    """The shell channel of a foreign machine: one command at a time (a lock serialises callers)."""

    def __init__(
        self,
        name: str,
        write: Callable[[bytes], None],
        login: Login,
        logger: logging.Logger,
        mute: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.logger = logger
        self.login = login
        self._write = write
        self._mute = mute  # mute(True) while a frame is read: its lines stay out of the log (not the console's)
        self.spawn = ConsoleSpawn()
        self._lock = threading.Lock()
        self.token = "vt" + secrets.token_hex(6)
        self.kernel_release: str | None = None
        self.setup_done = False  # (vmtest's per-run set-up is not run on a foreign image)

    # -- the console side -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.spawn.feed(data)

    def _send(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError as exc:
            raise BackdoorClosed(f"the serial console closed ({exc})") from None

    # -- logging in ---------------------------------------------------------------------

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> str:
        """Log in on the console and set the session up; returns the guest's kernel release."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.kernel_release = self._log_in(deadline, alive)
            return self.kernel_release

    def resume(self, timeout: float, alive: Callable[[], bool]) -> str:
        """A restored guest: its shell is logged in and idle at the prompt of the session that saved it (another
        token, which this one cannot tell from output). Set this session up over it at once; returns the
        guest's kernel release."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.kernel_release = self._log_in(deadline, alive, logged_in=True)
            return self.kernel_release

    def _expect(self, patterns: list[object], deadline: float, step: float, alive: Callable[[], bool]) -> int:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackdoorTimeout(f"logging in on the serial console as {self.login.user}")
        try:
            index: int = self.spawn.expect(patterns, timeout=min(step, left))
        except pexpect.EOF:
            raise BackdoorClosed("the serial console closed") from None
        if index == len(patterns) - 1 and not alive():  # the TIMEOUT entry
            raise BackdoorClosed("QEMU exited")
        return index

    def setup_line(self) -> bytes:
        """The line that makes a logged-in session ours (idempotent: it may be sent more than once)."""
        t = self.token
        return (
            "stty -echo -opost; set +o emacs +o vi 2>/dev/null; unset PROMPT_COMMAND HISTFILE; "
            f"PS1='{t[:2]}''{t[2:]}P> '; PS2=''; export TERM=dumb; {helper_definition(t)}; "
            f'printf \'%sR %s\\n\' "$_vtm" "$(uname -r)"\n'
        ).encode()

    def _log_in(self, deadline: float, alive: Callable[[], bool], logged_in: bool = False) -> str:
        """Answer prompts until the set-up line's answer shows. A shell prompt gets the set-up line (again
        after SETUP_WAIT: the shell may not have been reading yet); an idle console gets a newline.
        ``logged_in``: a shell is reading already; the set-up line goes first."""
        login = self.login
        patterns: list[object] = [
            re.compile(re.escape(self.token.encode()) + rb"R (\S+)\n"),
            re.compile(login.login_prompt.encode()),
            re.compile(login.password_prompt.encode()),
            re.compile(rb"Login incorrect|Authentication failure"),
            re.compile(login.shell_prompt.encode()),
            pexpect.TIMEOUT,
        ]
        seen = self.spawn.received
        set_up_at = -SETUP_WAIT
        if logged_in:
            self._send(self.setup_line())
            set_up_at = time.monotonic()
        while True:
            index = self._expect(patterns, deadline, IDLE, alive)
            if index == 0:
                release: str = self.spawn.match.group(1).decode(errors="replace")
                self.logger.debug("%s: serial shell ready (kernel %s)", self.name, release)
                return release
            if index == 1:
                self.logger.debug("%s: login prompt: sending the user name", self.name)
                self._send(login.user.encode() + b"\n")
            elif index == 2:
                if login.password is None:
                    raise LoginFailed(
                        f"the guest asks for a password for {login.user!r} and none is configured "
                        "(set image.password, or make the account log in without one)"
                    )
                self._send(login.password.encode() + b"\n")
            elif index == 3:
                raise LoginFailed(
                    f"the guest refused the login as {login.user!r} (Login incorrect): check image.user and "
                    "image.password"
                )
            elif index == 4 or time.monotonic() - set_up_at > SETUP_WAIT and set_up_at > 0:
                if time.monotonic() - set_up_at >= 2.0:
                    self._send(self.setup_line())
                    set_up_at = time.monotonic()
            elif self.spawn.received == seen:  # nothing new for IDLE seconds: ask for a fresh prompt
                self._send(b"\n")
            seen = self.spawn.received

    # -- commands -----------------------------------------------------------------------

    def run(self, command: str, timeout: float, binary: bool | None = None) -> Result:
        """Run ``command`` framed; after ``timeout`` seconds it is interrupted (Ctrl-C) and the result says
        killed (status 124) once the shell answers again."""
        binary = self.login.base64_output if binary is None else binary
        with self._lock:
            self.spawn.drop_pending()
            rid = secrets.token_hex(6)
            start = time.monotonic()
            if self._mute is not None:
                self._mute(True)
            try:
                for line in command_lines(rid, command, binary):
                    self._send(line)
                frame = self._read_frame(rid, binary, start + timeout)
            finally:
                if self._mute is not None:
                    self._mute(False)
            if frame is None:
                self._interrupt(rid)
                return Result(KILLED_STATUS, b"", time.monotonic() - start, killed=True)
            if frame.cleaned:
                self.logger.debug(
                    "%s: console lines of other writers were taken out of %r's output", self.name, command
                )
            return Result(frame.status, frame.stdout, time.monotonic() - start, stderr=frame.stderr)

    def _read_frame(self, rid: str, binary: bool, deadline: float) -> Frame | None:
        """The frame of ``rid``, or None at the deadline. The stream is parsed again when what arrived may
        end the frame (its id and a newline), or after a quiet second (a marker split by another writer)."""
        stream = bytearray()
        tail = rid.encode() + b"\n"
        parsed_at = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                chunk = self.spawn.read_nonblocking(1 << 20, timeout=min(left, 1.0))
            except pexpect.TIMEOUT:
                chunk = b""
            except pexpect.EOF:
                raise BackdoorClosed("the serial console closed") from None
            stream += chunk
            fresh = stream[max(0, len(stream) - len(chunk) - len(tail)) :]
            if (chunk and tail in fresh) or (not chunk and parsed_at != len(stream)):
                parsed_at = len(stream)
                try:
                    frame = parse_frame(bytes(stream), self.token, rid, binary)
                except FrameCorrupted as exc:
                    raise BackdoorTimeout(str(exc)) from None
                if frame is not None:
                    return frame

    def _interrupt(self, rid: str) -> None:
        """Ctrl-C, then a marker the shell must print: until it does, Ctrl-C again (a command may ignore one)."""
        marker = f"{self.token}K {rid}"
        sync = f"printf '%sK %s\\n' \"$_vtm\" {rid}\n".encode()
        pattern = re.compile(re.escape(marker.encode()) + rb"\n")
        deadline = time.monotonic() + INTERRUPT_GRACE
        while time.monotonic() < deadline:
            self._send(b"\x03")
            time.sleep(0.3)  # the tty flushes its input at the interrupt: the marker must come after
            self._send(sync)
            try:
                self.spawn.expect(pattern, timeout=min(3.0, max(0.1, deadline - time.monotonic())))
                return
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise BackdoorClosed("the serial console closed") from None
        raise BackdoorTimeout(f"the serial shell did not come back within {INTERRUPT_GRACE:.0f}s of Ctrl-C")

    def send_only(self, command: str) -> None:
        """Send a command without waiting for its output (poweroff, reboot)."""
        with self._lock:
            for line in command_lines(secrets.token_hex(6), command, False):
                self._send(line)

    def close(self) -> None:
        self.spawn.feed(b"")
