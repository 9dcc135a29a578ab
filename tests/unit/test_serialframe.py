"""The serial shell's framing (vmtest.vm.serialframe): escaping, the helper, and reading frames out of console
byte streams where kernel messages and systemd status lines interleave at any byte."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest

from vmtest.vm.serialframe import (
    FrameCorrupted,
    cksum,
    command_lines,
    escape,
    helper_definition,
    parse_frame,
)

TOKEN = "vt0123456789ab"
RID = "c0ffee"
PRINTK = b"[   12.345678] virtio_net virtio1 ens4: renamed from eth0\r\n"
STATUS = b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mgetty@tty1.service\x1b[0m - Getty on tty1.\r\n"
RECORDED = Path(__file__).parent / "data" / "serial-interleaved.bin"


def frame(out: bytes, err: bytes = b"", status: int = 0, binary: bool = False) -> bytes:
    """What the guest's helper prints for one command (as the real helper does, see test_helper_in_sh)."""
    head = f"{TOKEN}S {RID} {status} {cksum(out)} {len(out)} {cksum(err)} {len(err)}\n".encode()
    if binary:
        body = _b64_lines(out) + _b64_lines(err)
    else:
        body = out + err
    return head + body + f"{TOKEN}E {RID}\n".encode()


def _b64_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i : i + 76] + b"\n" for i in range(0, len(text), 76))


def test_cksum_matches_the_posix_command() -> None:
    for data in (b"", b"a", b"hello\n", os.urandom(70000)):
        crc = int(subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout.split()[0])
        assert cksum(data) == crc


def test_escape_keeps_printable_ascii_and_escapes_the_rest() -> None:
    assert escape("echo hi") == "echo hi"
    assert escape("a'b\\c\nd\té") == "a\\0047b\\0134c\\0012d\\0011\\0303\\0251"
    with pytest.raises(ValueError, match="NUL"):
        escape("a\0b")


def test_long_commands_go_in_pieces_and_no_escape_is_split() -> None:
    command = "echo " + "é" * 3000
    lines = command_lines(RID, command, binary=False, max_line=1000)
    assert len(lines) > 3
    assert all(len(line) < 1100 for line in lines)
    assert lines[-1] == f'_vt {RID} "$_vc" r\n'.encode()
    pieces = [line.split(b"'")[1] for line in lines[:-1]]
    assert b"".join(pieces).decode() == escape(command)
    assert all(re.fullmatch(rb"(?:[^\\]|\\0[0-7]{3})*", piece) for piece in pieces)


# the helper's scratch directory (/tmp/.vmtest-XXXXXX): here the host's /tmp, not a guest's
REMOVE_HELPER_DIR = 'rm -rf "$_vtd"\n'


def test_helper_in_sh_frames_status_output_and_stderr(tmp_path: Path) -> None:
    """The helper run by a real POSIX shell (dash), then read back by the parser."""
    script = (
        helper_definition(TOKEN) + "\n" + command_lines(RID, "printf 'a\\nb'; echo oops >&2; exit 3", False)[0].decode()
    ) + REMOVE_HELPER_DIR
    stream = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    got = parse_frame(stream, TOKEN, RID, binary=False)
    assert got is not None and (got.status, got.stdout, got.stderr) == (3, b"a\nb", b"oops\n")
    binary = (
        helper_definition(TOKEN) + "\n" + command_lines(RID, "head -c 1000 /dev/urandom | tee out", True)[0].decode()
    ) + REMOVE_HELPER_DIR
    stream = subprocess.run(["sh", "-c", binary], capture_output=True, check=True, cwd=tmp_path).stdout
    got = parse_frame(stream, TOKEN, RID, binary=True)
    assert got is not None and got.stdout == (tmp_path / "out").read_bytes()


def test_incomplete_frame_is_none() -> None:
    whole = frame(b"hello\n")
    for cut in (0, 10, len(whole) - 1):
        assert parse_frame(whole[:cut], TOKEN, RID, binary=False) is None


def test_other_commands_frames_do_not_count() -> None:
    other = frame(b"x").replace(RID.encode(), b"beef00")
    assert parse_frame(other, TOKEN, RID, binary=False) is None


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("noise", [PRINTK, STATUS, PRINTK + STATUS + PRINTK])
def test_foreign_lines_at_every_byte_are_taken_out(binary: bool, noise: bytes) -> None:
    """A kernel message or status line inserted at any byte of the frame (markers included)."""
    out = b"first line\nsecond \x00\x01\xff binary\nno newline at the end"
    whole = frame(out, b"warn\n", 7, binary)
    for at in range(len(whole) + 1):
        got = parse_frame(whole[:at] + noise + whole[at:], TOKEN, RID, binary)
        assert got is not None, at
        assert (got.status, got.stdout, got.stderr) == (7, out, b"warn\n"), at


def test_output_that_looks_like_kernel_messages_is_kept() -> None:
    """`dmesg` output has the printk shape but ends in LF (the shell's tty runs -opost): never taken out."""
    out = b"[    0.000000] Linux version 6.1.0\n[    0.000001] Command line: root=/dev/vda\n"
    got = parse_frame(b"junk" + frame(out), TOKEN, RID, binary=False)
    assert got is not None and got.stdout == out and not got.cleaned
    crlf = b"[    1.000000] a line with CR LF\r\n"  # output that really has the shape: the raw view holds
    got = parse_frame(frame(crlf), TOKEN, RID, binary=False)
    assert got is not None and got.stdout == crlf


def test_an_unknown_writer_in_raw_output_is_detected_not_returned() -> None:
    whole = frame(b"abcdef\n")
    corrupted = whole.replace(b"abc", b"abcsomebody else wrote this\r\n")
    with pytest.raises(FrameCorrupted, match="size and CRC"):
        parse_frame(corrupted, TOKEN, RID, binary=False)


def test_an_unknown_line_between_base64_lines_is_taken_out() -> None:
    out = os.urandom(500)
    whole = frame(out, binary=True)
    first_end = whole.index(b"\n", whole.index(b"\n") + 1) + 1  # after the header and one base64 line
    noisy = whole[:first_end] + b"Debian GNU/Linux 12 debian ttyS0\r\n" + whole[first_end:]
    got = parse_frame(noisy, TOKEN, RID, binary=True)
    assert got is not None and got.stdout == out


@pytest.mark.skipif(not RECORDED.exists(), reason="no recorded stream")
def test_recorded_stream_from_a_real_guest() -> None:
    """Bytes a real Debian guest's console printed while kernel messages landed in the middle of a command's
    frame, some inside an output line (recorded from tests/integration/test_foreign.py's NOISY command: the
    first line of the file is the session token, the request id, the mode and the number of output lines)."""
    data = RECORDED.read_bytes()
    header, stream = data.split(b"\n", 1)
    token, rid, mode, lines = header.decode().split()
    head = stream.index(f"{token}S {rid}".encode())
    assert re.search(rb"line \d*\[ *\d+\.\d+\] vmtest-noise \d+\r\n", stream[head:])  # one inside a line
    got = parse_frame(stream, token, rid, binary=mode == "b")
    assert got is not None and got.status == 0 and got.cleaned
    assert got.stdout.decode() == "".join(f"line {i}\n" for i in range(1, int(lines) + 1))
    with pytest.raises(FrameCorrupted):  # one byte lost: the CRC says so, the output is never returned wrong
        parse_frame(stream.replace(b"line 1234\n", b"line 123\n"), token, rid, binary=False)
