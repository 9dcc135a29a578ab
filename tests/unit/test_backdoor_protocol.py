"""The backdoor protocol, both ends, without a VM.

The host side's encoding is checked against real ``bash``'s ``printf %b``; the
guest side (``image/guest/backdoor``) runs for real under bash on a pty that
stands in for the virtio serial port.
"""

from __future__ import annotations

import base64
import logging
import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmtest
from vmtest.core.contract import CONSOLE_LOGLEVEL, SETUP_DONE
from vmtest.vm.backdoor import (
    KILLED_STATUS,
    READY,
    Backdoor,
    BackdoorClosed,
    decode_payload,
    encode_kill,
    encode_run,
    escape_command,
    new_id,
    reply_header,
)

GUEST_SCRIPT = Path(vmtest.__file__).parent / "image" / "guest" / "backdoor"

TRICKY = [
    "echo hello",
    "",
    "echo one\necho two\n",
    "printf 'a\\nb'",
    "a\\b\\\\c\\",
    "\\0101 \\x41 \\c not cut \\n",
    "  leading and trailing  ",
    "tab\there\t",
    'echo "it\'s" \'a "quoted" test\' `backticks` $(subst)',
    "echo héllo wörld ✓ 日本語 🚀",
    "%s %d %% %b %",
    "\x02vmtest-out deadbeef 0 0 raw\n",
    "crlf\r\nline\r",
    "\x01\x7f\x1b[0m",
    "-n -e",
    "digits after escapes: \n123\t777\\0",
]

ESCAPED_FORM = re.compile(rb"(?:[!-\[\]-~]|\\0[0-7]{3})*")


# -- escape_command ---------------------------------------------------------------


def printf_b(escaped: bytes) -> bytes:
    """What real bash's ``printf %b`` makes of ``escaped`` (as the guest does)."""
    proc = subprocess.run(
        ["bash", "-c", 'printf %b "$1"', "_", escaped.decode("ascii")],
        env={**os.environ, "LC_ALL": "C"},
        capture_output=True,
        check=True,
        timeout=5,
    )
    return proc.stdout


@pytest.mark.parametrize("command", TRICKY)
def test_escaped_form_is_one_unambiguous_printable_line(command: str) -> None:
    escaped = escape_command(command)
    assert all(0x21 <= byte <= 0x7E for byte in escaped), escaped
    assert b" " not in escaped and b"\n" not in escaped and b"\t" not in escaped
    # Every backslash starts a full \0ooo escape: nothing is left to interpretation.
    assert ESCAPED_FORM.fullmatch(escaped), escaped
    line = encode_run("0123abcd", command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line[:-1].split(b" ") == [b"run", b"0123abcd", escaped]


@pytest.mark.parametrize("command", TRICKY)
def test_printf_b_round_trip(command: str) -> None:
    assert printf_b(escape_command(command)) == command.encode()


def test_escape_command_pinned() -> None:
    assert escape_command("ls -l /tmp") == b"ls\\0040-l\\0040/tmp"
    assert escape_command("a\\b\n") == b"a\\0134b\\0012"
    assert escape_command("é") == b"\\0303\\0251"
    assert escape_command("%'\"$`") == b"%'\"$`"


def test_encode_kill() -> None:
    assert encode_kill("00ff") == b"kill 00ff\n"


def test_new_id_is_random_hex() -> None:
    ids = {new_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_reply_header_matches_only_its_own_id() -> None:
    header = reply_header("abc")
    m = header.search(b"junk\x02vmtest-out abcd 0 1 raw 0 raw\n\x02vmtest-out abc 12 345 b64 6 raw\nrest")
    assert m is not None
    assert m.groups() == (b"12", b"345", b"b64", b"6", b"raw")
    assert header.search(b"\x02vmtest-out ab 0 1 raw 0 raw\n") is None
    assert header.search(b"\x02vmtest-out abc 0 1 gzip 0 raw\n") is None
    assert header.search(b"\x02vmtest-out abc 0 1 raw\n") is None  # the stderr part is not optional
    assert reply_header("a.c").search(b"\x02vmtest-out abc 0 1 raw 0 raw\n") is None


def test_decode_payload() -> None:
    assert decode_payload(b"YQBi", b"b64") == b"a\x00b"
    assert decode_payload(b"YQBi", b"raw") == b"YQBi"


# -- the guest loop on a pty ---------------------------------------------------------


class Guest:
    """``image/guest/backdoor`` under bash, on a pty standing in for its virtio serial port."""

    def __init__(self, state_dir: Path, nice: int = 0) -> None:
        self.state_dir = state_dir
        self.master, slave = pty.openpty()
        self.tty = os.ttyname(slave)
        env = {
            **os.environ,
            "VMTEST_STATE_DIR": str(state_dir),
            "VMTEST_PORT": self.tty,
            "VMTEST_LOG_TTY": "/dev/null",
            "VMTEST_SETUP_DONE": str(state_dir.parent / "setup.done"),
            "VMTEST_PRINTK": str(state_dir.parent / "printk"),
        }
        self.proc = subprocess.Popen(
            [*(["nice", "-n", str(nice)] if nice else []), "bash", str(GUEST_SCRIPT)],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.buf = b""
        self.stderr = b""
        self.stderr_encoding = b""

    # reading

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply; buffer holds {self.buf!r}")
        ready, _, _ = select.select([self.master], [], [], left)
        if not ready:
            raise TimeoutError(f"no reply; buffer holds {self.buf!r}")
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the slave side is closed
            data = b""
        if not data:
            raise EOFError(f"the guest loop exited; buffer holds {self.buf!r}")
        self.buf += data

    def expect(self, pattern: re.Pattern[bytes], timeout: float = 2.0) -> tuple[bytes, re.Match[bytes]]:
        """(bytes skipped before the match, match); consumes through the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.buf)
            if m:
                skipped = self.buf[: m.start()]
                self.buf = self.buf[m.end() :]
                return skipped, m
            self._fill(deadline)

    def reply(self, rid: str, timeout: float = 2.0) -> tuple[int, bytes, bytes]:
        """(status, decoded output, encoding) of the reply to ``rid``; its decoded stderr goes to
        ``self.stderr`` (and its encoding to ``self.stderr_encoding``).

        The header must be the next thing in the stream (nothing is echoed,
        nothing else is printed); exactly ``nbytes`` + ``errbytes`` of payload are consumed.
        """
        deadline = time.monotonic() + timeout
        skipped, m = self.expect(reply_header(rid), timeout)
        assert skipped == b"", f"unexpected bytes before the reply: {skipped!r}"
        status, size, encoding = int(m.group(1)), int(m.group(2)), m.group(3)
        err_size, self.stderr_encoding = int(m.group(4)), m.group(5)
        while len(self.buf) < size + err_size:
            self._fill(deadline)
        payload, err, self.buf = self.buf[:size], self.buf[size : size + err_size], self.buf[size + err_size :]
        self.stderr = decode_payload(err, self.stderr_encoding)
        return status, decode_payload(payload, encoding), encoding

    def quiet(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds`` (expected: nothing)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._fill(deadline)
        except TimeoutError:
            pass
        data, self.buf = self.buf, b""
        return data

    # writing

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def run(self, command: str, timeout: float = 2.0) -> tuple[int, bytes, bytes]:
        rid = new_id()
        self.send(encode_run(rid, command))
        return self.reply(rid, timeout)

    # processes

    def members(self) -> dict[int, str]:
        """Live processes of the loop's session: pid -> command line."""
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[3]) == self.proc.pid and fields[0] != b"Z":
                out[int(entry)] = cmdline
        return out

    def sleeps(self) -> list[int]:
        return [pid for pid, cmd in self.members().items() if cmd.startswith("sleep ")]

    def close(self) -> None:
        leftovers = [pid for pid in self.members() if pid != self.proc.pid]
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in leftovers:  # commands run in their own process groups
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=5)
        os.close(self.master)


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[Guest]:
    g = Guest(tmp_path / "state")
    try:
        yield g
    finally:
        g.close()


def ready(guest: Guest) -> str:
    skipped, m = guest.expect(READY)
    assert skipped == b""
    return m.group(1).decode()


def test_ready_banner(guest: Guest) -> None:
    release, setup = ready(guest).split(" ")
    assert release == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert setup == "setup-missing"  # no VMTEST_SETUP_DONE file
    assert guest.state_dir.is_dir()
    # the console log level was set as the loop greeted the host
    assert (guest.state_dir.parent / "printk").read_text() == f"{CONSOLE_LOGLEVEL}\n"


def test_ready_banner_says_when_the_setup_completed(tmp_path: Path) -> None:
    (tmp_path / "setup.done").touch()
    g = Guest(tmp_path / "state")
    try:
        assert ready(g).split(" ")[1] == "setup-done"
    finally:
        g.close()


def test_the_guest_script_defaults_to_the_contract() -> None:
    text = GUEST_SCRIPT.read_text()
    assert f"VMTEST_SETUP_DONE:-{SETUP_DONE}}}" in text
    assert f"echo {CONSOLE_LOGLEVEL} 2>/dev/null > " in text


def test_commands_run_at_nice_0_though_the_loop_starts_niced(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may lower a nice value")
    g = Guest(tmp_path / "state", nice=-5)
    try:
        ready(g)
        status, out, _ = g.run("nice; cut -d' ' -f19 /proc/$$/stat")  # a command's shell, and the loop's
        assert (status, out) == (0, b"0\n0\n")
    finally:
        g.close()


def test_uname(guest: Guest) -> None:
    ready(guest)
    assert guest.run("uname") == (0, b"Linux\n", b"raw")


def test_binary_output_with_nul_bytes(guest: Guest) -> None:
    ready(guest)
    status, output, encoding = guest.run("printf 'a\\0b\\0\\0c\\n\\377'")
    assert (status, output, encoding) == (0, b"a\x00b\x00\x00c\n\xff", b"b64")


def test_large_binary_output(guest: Guest) -> None:
    ready(guest)
    expected = b"".join(b"x\x00y%d\n" % i for i in range(1, 3001))
    status, output, encoding = guest.run("for i in $(seq 1 3000); do printf 'x\\0y%d\\n' $i; done")
    assert (status, encoding) == (0, b"b64")
    assert output == expected


def test_every_non_nul_byte_comes_back_raw(guest: Guest) -> None:
    ready(guest)
    everything = bytes(range(1, 256))
    octal = "".join(f"\\{b:03o}" for b in everything)
    assert guest.run(f"printf '%b' '{octal}'") == (0, everything, b"raw")


def test_output_without_trailing_newline(guest: Guest) -> None:
    ready(guest)
    assert guest.run("printf abc") == (0, b"abc", b"raw")
    assert guest.run("printf 'x\\n\\n\\n'") == (0, b"x\n\n\n", b"raw")
    assert guest.run("true") == (0, b"", b"raw")


def test_exit_status(guest: Guest) -> None:
    ready(guest)
    assert guest.run("echo before; exit 3") == (3, b"before\n", b"raw")


def test_set_e_stops_at_first_failure(guest: Guest) -> None:
    ready(guest)
    assert guest.run("false; echo x") == (1, b"", b"raw")


def test_pipefail_and_nounset(guest: Guest) -> None:
    ready(guest)
    assert guest.run("false | true; echo x")[0] == 1
    status, output, _ = guest.run("echo $undefined_variable_xyz; echo x")
    assert status != 0 and output == b""


def test_fake_header_in_output_is_payload(guest: Guest) -> None:
    ready(guest)
    rid = new_id()
    fake = f"\x02vmtest-out {rid} 0 0 raw\n".encode()
    guest.send(encode_run(rid, f"printf '\\002vmtest-out %s 0 0 raw\\n' {rid}; echo after"))
    status, output, encoding = guest.reply(rid)
    assert (status, encoding) == (0, b"raw")
    assert output == fake + b"after\n"
    # The stream stays in step: nothing left over, and the next command works.
    assert guest.buf == b""
    assert guest.run("echo next") == (0, b"next\n", b"raw")


def test_stderr_and_stdin_are_not_the_channel(guest: Guest) -> None:
    ready(guest)
    assert guest.run("echo out; echo err >&2") == (0, b"out\n", b"raw")
    assert guest.stderr == b"err\n"
    # stdin is /dev/null: `cat` must not swallow the following requests.
    assert guest.run("cat") == (0, b"", b"raw")
    assert guest.run("echo still here") == (0, b"still here\n", b"raw")


def test_stderr_comes_back_framed_apart_from_stdout(guest: Guest) -> None:
    ready(guest)
    status, output, _ = guest.run("echo one; echo 'cat: /etc/nope: No such file' >&2; printf two; exit 3")
    assert (status, output, guest.stderr) == (3, b"one\ntwo", b"cat: /etc/nope: No such file\n")
    assert guest.run("true") == (0, b"", b"raw") and guest.stderr == b""  # each command has its own
    # A real failing command, and stderr that imitates a header or holds NUL bytes.
    assert guest.run("cat /does-not-exist")[0] == 1
    assert guest.stderr.startswith(b"cat: ") and b"/does-not-exist" in guest.stderr
    rid = new_id()
    guest.send(encode_run(rid, f"printf '\\002vmtest-out %s 0 0 raw 0 raw\\n' {rid} >&2; echo out"))
    assert guest.reply(rid) == (0, b"out\n", b"raw")
    assert guest.stderr == f"\x02vmtest-out {rid} 0 0 raw 0 raw\n".encode()
    assert guest.run("printf 'a\\0b' >&2; echo ok") == (0, b"ok\n", b"raw")
    assert (guest.stderr, guest.stderr_encoding) == (b"a\x00b", b"b64")
    assert guest.buf == b""


def test_tricky_commands_through_the_guest(guest: Guest) -> None:
    ready(guest)
    for text in TRICKY:
        assert guest.run("printf '%s' " + shlex.quote(text)) == (0, text.encode(), b"raw"), text


def test_command_environment(guest: Guest) -> None:
    ready(guest)
    status, output, _ = guest.run('echo "${LANG}" "${LC_ALL-unset}" "$TERM"')
    assert (status, output) == (0, b"C.UTF-8 unset dumb\n")
    status, output, _ = guest.run("pwd")
    assert status == 0 and output in (b"/root\n", b"/\n")
    # The port opens once at a time: a command (or a daemon it starts) never holds the loop's copy.
    assert guest.run("ls /proc/$BASHPID/fd") == (0, b"0\n1\n2\n", b"raw")


def test_background_process_holding_stdout_does_not_block(guest: Guest) -> None:
    ready(guest)
    start = time.monotonic()
    assert guest.run("sleep 30 & echo bg", timeout=15) == (0, b"bg\n", b"raw")
    # Far less than the 30 s the background sleep holds stdout (a bound loose
    # enough for a loaded machine: this is not a speed test).
    assert time.monotonic() - start < 15
    # (polled: on a loaded machine the forked child may not have exec'd sleep yet)
    deadline = time.monotonic() + 10
    while not guest.sleeps() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert guest.sleeps(), "the background sleep should still be running"
    assert guest.run("echo next") == (0, b"next\n", b"raw")


def test_kill_gives_status_124_and_kills_the_group(guest: Guest) -> None:
    ready(guest)
    rid = new_id()
    guest.send(encode_run(rid, "sleep 30 & sleep 30"))
    assert guest.quiet(0.2) == b""  # still running
    assert len(guest.sleeps()) == 2
    guest.send(encode_kill(rid))
    assert guest.reply(rid) == (KILLED_STATUS, b"", b"raw")
    deadline = time.monotonic() + 1.0
    while guest.sleeps() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert guest.sleeps() == []
    assert guest.run("echo alive") == (0, b"alive\n", b"raw")


def test_output_files_are_cleaned_up_in_batches(guest: Guest) -> None:
    # The guest removes the output files of finished commands 32 at a time.
    ready(guest)
    for i in range(40):
        assert guest.run(f"echo {i}") == (0, f"{i}\n".encode(), b"raw")
    deadline = time.monotonic() + 3.0
    while len(list(guest.state_dir.glob("*.out"))) > 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    remaining = len(list(guest.state_dir.glob("*.out")))
    assert 0 < remaining <= 8
    assert len(list(guest.state_dir.glob("*.err"))) == remaining  # stderr files go with them


def test_command_with_its_own_exit_trap_still_replies(guest: Guest) -> None:
    ready(guest)
    status, output, _ = guest.run("trap 'echo bye' EXIT; echo hi", timeout=0.5)
    assert status == 0
    assert output.startswith(b"hi\n")


# -- the host client (vmtest.backdoor.Backdoor) against a fake guest -------------------


class FakeGuest:
    """The guest end of a socketpair, driven by a script in a thread."""

    def __init__(self) -> None:
        self.host_sock, self.sock = socket.socketpair()
        self.reader = self.sock.makefile("rb")
        self.requests: list[bytes] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def readline(self) -> bytes:
        line = self.reader.readline()
        self.requests.append(line)
        return line

    def send_chunked(self, data: bytes, size: int = 7) -> None:
        for i in range(0, len(data), size):
            self.sock.sendall(data[i : i + size])
            time.sleep(0.001)

    def start(self, script) -> None:  # type: ignore[no-untyped-def]
        def body() -> None:
            try:
                script(self)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                self.error = e

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=5)
        assert self.error is None, self.error
        self.reader.close()
        self.sock.close()


def test_client_reads_length_prefixed_payload() -> None:
    fake = FakeGuest()
    payloads: list[bytes] = []

    def script(g: FakeGuest) -> None:
        g.send_chunked(b"boot noise\r\n\x02vmtest-ready 6.1.0-test\n")
        rid = g.readline().split(b" ")[1]
        payload = b"\x02vmtest-out " + rid + b" 0 0 raw 0 raw\nno newline"
        payloads.append(payload)
        g.send_chunked(b"\x02vmtest-out " + rid + b" 7 %d raw 4 raw\n" % len(payload) + payload + b"err\n")
        rid = g.readline().split(b" ")[1]
        binary = base64.b64encode(b"a\x00b\x00c")
        err = base64.b64encode(b"\x00")
        g.send_chunked(
            b"\x02vmtest-out " + rid + b" 0 %d b64 %d b64\n" % (len(binary), len(err)) + binary + err, size=3
        )

    fake.start(script)
    bd = Backdoor("m1", fake.host_sock, logging.getLogger("vmtest.test"))
    try:
        assert bd.wait_ready(2.0, lambda: True) == "6.1.0-test"
        assert bd.kernel_release == "6.1.0-test" and not bd.setup_done  # (a banner that does not say)
        result = bd.run("echo 'hi there'\n", timeout=2.0)
        assert (result.status, result.output, result.killed, result.stderr) == (7, payloads[0], False, b"err\n")
        result = bd.run("printf 'a\\0b\\0c'", timeout=2.0)
        assert (result.status, result.output, result.stderr) == (0, b"a\x00b\x00c", b"\x00")
        fake.finish()
        first = fake.requests[0].rstrip(b"\n").split(b" ")
        assert first[0] == b"run" and first[2] == escape_command("echo 'hi there'\n")
    finally:
        bd.close()


def test_client_reads_the_setup_state_from_the_banner() -> None:
    fake = FakeGuest()
    fake.start(lambda g: g.send_chunked(b"\x02vmtest-ready 6.1.0-test setup-done\n"))
    bd = Backdoor("m1", fake.host_sock, logging.getLogger("vmtest.test"))
    try:
        assert bd.wait_ready(2.0, lambda: True) == "6.1.0-test"
        assert bd.setup_done
        fake.finish()
    finally:
        bd.close()


def test_client_kills_on_timeout() -> None:
    fake = FakeGuest()

    def script(g: FakeGuest) -> None:
        rid = g.readline().split(b" ")[1]
        kill = g.readline()
        assert kill == b"kill " + rid + b"\n", kill
        g.sock.sendall(b"\x02vmtest-out " + rid + b" 124 0 raw 0 raw\n")

    fake.start(script)
    bd = Backdoor("m1", fake.host_sock, logging.getLogger("vmtest.test"))
    try:
        result = bd.run("sleep 30", timeout=0.2)
        assert result.status == KILLED_STATUS
        assert result.output == b""
        assert result.killed is True
        assert 0.2 <= result.elapsed < 5.0  # killed after its timeout, not after the 30 s sleep
        fake.finish()
    finally:
        bd.close()


def test_client_reports_closed_console() -> None:
    fake = FakeGuest()

    def script(g: FakeGuest) -> None:
        g.readline()
        g.sock.shutdown(socket.SHUT_RDWR)

    fake.start(script)
    bd = Backdoor("m1", fake.host_sock, logging.getLogger("vmtest.test"))
    try:
        with pytest.raises(BackdoorClosed):
            bd.run("true", timeout=2.0)
        fake.finish()
    finally:
        bd.close()


def test_the_guest_loop_looks_for_the_port_the_host_declares() -> None:
    from vmtest.core.contract import BACKDOOR_PORT
    from vmtest.vm.argv import channel_args
    from vmtest.vm.paths import MachinePaths

    assert f'[ "$n" = {BACKDOOR_PORT} ]' in GUEST_SCRIPT.read_text()
    assert any(f"name={BACKDOOR_PORT}," in arg for arg in channel_args(MachinePaths(Path("/state"))))
