"""The serial console reader: line splitting, cleaning, tail, raw log, EOF."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmtest.vm.console import SerialConsole, clean_line

# -- clean_line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"plain", "plain"),
        (b"with cr\r", "with cr"),
        (b"\rover\rwrite\r", "overwrite"),
        (b"\x1b[0;32m  OK  \x1b[0m] Started nginx.", "  OK  ] Started nginx."),
        (b"\x1b[?25l\x1b[1;31mFAILED\x1b[0m\x1b[?25h\r", "FAILED"),
        (b"\x1b[2K\x1b[1Gprogress 50%", "progress 50%"),
        (b"\x1b(Bcharset\x1b)0", "charset"),
        (b"\x1b7saved\x1b8 \x1b= \x1b>", "saved  "),
        (b"caf\xc3\xa9 \xe2\x9c\x93", "café ✓"),
        (b"bad \xff byte", "bad \ufffd byte"),
        (b"", ""),
    ],
)
def test_clean_line(raw: bytes, text: str) -> None:
    assert clean_line(raw) == text


def test_clean_line_strips_osc_sequences() -> None:
    assert clean_line(b"\x1b]0;vm: title\x07hello\x1b]3008;start=abc\x1b\\ world") == "hello world"


# -- SerialConsole --------------------------------------------------------------------------


def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[SerialConsole, socket.socket]]:
    ours, theirs = socket.socketpair()
    con = SerialConsole("m1", logging.getLogger("vmtest.test.m1"), tmp_path / "console.log")
    con.attach(ours)
    try:
        yield con, theirs
    finally:
        theirs.close()
        con.detach()


def test_lines_split_across_chunk_boundaries(console: tuple[SerialConsole, socket.socket]) -> None:
    con, peer = console
    steps = [
        (b"hel", [], "hel"),
        (b"lo\r\nwor", ["hello"], "wor"),
        (b"ld\r\n\r\nline ", ["hello", "world", ""], "line "),
        (b"three\nfour\nfi", ["hello", "world", "", "line three", "four"], "fi"),
        (b"ve", ["hello", "world", "", "line three", "four"], "five"),
    ]
    for chunk, lines, partial in steps:
        peer.sendall(chunk)  # one chunk at a time: each arrives in its own recv()
        wait_for(lambda lines=lines, partial=partial: con.tail(100) == [*lines, partial])
        assert con.lines == lines
    assert con.tail(2) == ["four", "five"]


def test_feed_every_split_point_gives_same_lines(tmp_path: Path) -> None:
    stream = b"\x1b[0;32mOK\x1b[0m one\r\ntwo\n\nthr\xc3\xa9e\r\nfour"
    expected = ["OK one", "two", "", "thrée"]
    for cut in range(len(stream) + 1):
        con = SerialConsole("m", logging.getLogger("vmtest.test.split"), tmp_path / "unused.log")
        con.echo = False
        con._feed(stream[:cut])
        con._feed(stream[cut:])
        assert con.lines == expected, cut
        assert con.tail(1) == ["four"]


def test_tail_includes_unfinished_line(console: tuple[SerialConsole, socket.socket]) -> None:
    con, peer = console
    peer.sendall(b"a\nb\nc\nd")
    wait_for(lambda: con.lines == ["a", "b", "c"] and con._partial == b"d")
    assert con.tail(2) == ["c", "d"]
    assert con.tail(10) == ["a", "b", "c", "d"]
    assert con.tail(1) == ["d"]
    assert con.lines == ["a", "b", "c"]  # the partial line is not yet a line


def test_tail_without_partial_line(console: tuple[SerialConsole, socket.socket]) -> None:
    con, peer = console
    peer.sendall(b"a\nb\nc\n")
    wait_for(lambda: len(con.lines) == 3)
    assert con.tail(2) == ["b", "c"]
    assert con.tail() == ["a", "b", "c"]


def test_console_log_receives_raw_bytes_and_eof_sets_closed(
    console: tuple[SerialConsole, socket.socket], tmp_path: Path
) -> None:
    con, peer = console
    raw = [b"\x1b[1mBoot\x1b[0m\r\n", b"caf\xc3\xa9 \xff\x00\r\n", b"no newline at the end"]
    for chunk in raw:
        peer.sendall(chunk)
    assert not con.closed
    peer.close()
    wait_for(lambda: con.closed)
    assert (tmp_path / "console.log").read_bytes() == b"".join(raw)
    # The unfinished last line is flushed as a line on EOF.
    assert con.lines == ["Boot", "caf\u00e9 \ufffd\x00", "no newline at the end"]


def test_console_log_appends(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"previous boot\n")
    ours, theirs = socket.socketpair()
    con = SerialConsole("m1", logging.getLogger("vmtest.test.m1"), log)
    con.attach(ours)
    theirs.sendall(b"second boot\n")
    theirs.close()
    wait_for(lambda: con.closed)
    con.detach()
    assert log.read_bytes() == b"previous boot\nsecond boot\n"


def test_lines_are_logged_with_machine_name(
    console: tuple[SerialConsole, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmtest.test.m1")
    con, peer = console
    peer.sendall(b"\x1b[32mhello\x1b[0m\r\n")
    wait_for(lambda: con.lines == ["hello"])
    wait_for(lambda: "m1 # hello" in caplog.messages)
    con.echo = False
    peer.sendall(b"quiet\n")
    wait_for(lambda: con.lines == ["hello", "quiet"])
    assert "m1 # quiet" not in caplog.messages


def test_write_and_detach(console: tuple[SerialConsole, socket.socket]) -> None:
    con, peer = console
    con.write(b"root\n")
    assert peer.recv(100) == b"root\n"
    con.detach()
    assert con.closed
    with pytest.raises(OSError):
        con.write(b"x")


def test_write_before_attach(tmp_path: Path) -> None:
    con = SerialConsole("m1", logging.getLogger("vmtest.test.m1"), tmp_path / "c.log")
    with pytest.raises(OSError, match="not connected"):
        con.write(b"x")


def test_tail_since_keeps_the_lines_of_the_call(console: tuple[SerialConsole, socket.socket]) -> None:
    con, peer = console
    peer.sendall(b"".join(b"[    0.%d] early chatter\n" % i for i in range(10)))
    peer.sendall(b"[    1.0] ACPI boot chatter\n[    2.0] drm chatter\n")
    wait_for(lambda: len(con.lines) == 12)
    began = time.monotonic()
    # Nothing since the call began: a note, then the last lines before it.
    assert con.tail(20, since=began) == [
        "(no console output since this call began; the last lines before it:)",
        "[    0.7] early chatter",
        "[    0.8] early chatter",
        "[    0.9] early chatter",
        "[    1.0] ACPI boot chatter",
        "[    2.0] drm chatter",
    ]
    peer.sendall(b"nginx[123]: bind() failed\nunfinished")
    wait_for(lambda: con.tail(10)[-1:] == ["unfinished"])
    assert con.tail(5, since=began) == ["nginx[123]: bind() failed", "unfinished"]
    assert con.tail(1, since=began) == ["unfinished"]
    assert con.tail(3) == ["[    2.0] drm chatter", "nginx[123]: bind() failed", "unfinished"]


def test_tail_since_on_an_empty_console(console: tuple[SerialConsole, socket.socket]) -> None:
    con, _ = console
    assert con.tail(5, since=time.monotonic()) == []
