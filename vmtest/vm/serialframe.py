"""The framing of commands on a serial-console shell (pure: no I/O, unit-tested with recorded streams).

A logged-in shell on the serial console (:mod:`vmtest.vm.serialshell`) gets
one helper function, :func:`helper_definition`. Each command is sent as
``_vt ID 'ESCAPED' MODE`` (the command escaped to printable ASCII for
``printf %b``, see :func:`command_lines`); the helper runs it in a subshell
with stdin from /dev/null and stdout and stderr each into a file, then prints::

    TOKEN<S> ID STATUS CRC SIZE CRC SIZE\\n   (POSIX cksum of stdout, then of stderr)
    <stdout><stderr>                          (as they are, or base64 in mode b)
    TOKEN<E> ID\\n

``TOKEN`` is random per shell session and ``ID`` per command, so neither the
command's output nor an old command's frame can end this one. The console
is shared with the kernel (printk) and other writers (systemd's status
lines): their lines can land anywhere, even inside a marker, at any byte.
:func:`parse_frame` therefore reads the stream in views — first with such
foreign lines removed, then as it came — and accepts the first view whose
payload has the size and CRC the guest announced. Output is never
silently wrong: a frame no view explains raises :class:`FrameCorrupted`.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass

# Kernel console records end in CR LF (the serial console driver adds the CR; the shell's own output does
# not: its tty runs with -opost). A record starts with the printk time stamp, or is a systemd status line.
PRINTK = re.compile(rb"\[ *\d+\.\d+\][^\r\n]*\r\n")
STATUS = re.compile(rb"\[(?:\x1b\[[0-9;]*m)? *(?:OK|FAILED|DEPEND|TIME|\*+) *(?:\x1b\[[0-9;]*m)?\][^\r\n]*\r\n")
# A console line of another writer, outside any record we know: only in base64 payloads (whose alphabet
# has neither CR nor a space) can it be told from output, so it is removed there only: a whole line
# ending in CR LF, or from its first character outside the alphabet when it landed inside a line.
ANY_CR_LINE = re.compile(rb"(?m)^[^\n]*\r\n|[^A-Za-z0-9+/=\n][^\n]*\r\n")

SAFE = frozenset(range(0x20, 0x7F)) - {ord("'"), ord("\\")}
MAX_LINE = 3000  # bytes of escaped command per line sent (a canonical tty line holds 4095)


class FrameCorrupted(Exception):
    """The frame arrived but no reading of it matches the size and CRC the guest sent."""


def escape(command: str) -> str:
    """``command`` as printable ASCII without quote or backslash, for ``printf %b '...'``."""
    if "\0" in command:
        raise ValueError("a shell command cannot contain a NUL character")
    return "".join(chr(b) if b in SAFE else f"\\0{b:03o}" for b in command.encode())


def command_lines(rid: str, command: str, binary: bool, max_line: int = MAX_LINE) -> list[bytes]:
    """The lines that run ``command`` as request ``rid``: one, or the command in pieces into ``_vc`` first."""
    text = escape(command)
    mode = "b" if binary else "r"
    if len(text) <= max_line:
        return [f"_vt {rid} '{text}' {mode}\n".encode()]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + max_line, len(text))
        cut = text.rfind("\\", max(start, end - 4), end)  # never split an escape \0ooo
        if end < len(text) and cut != -1 and cut + 5 > end:
            end = cut
        pieces.append(text[start:end])
        start = end
    lines = [f"_vc='{pieces[0]}'\n".encode()]
    lines += [f"_vc=\"$_vc\"'{piece}'\n".encode() for piece in pieces[1:]]
    lines.append(f'_vt {rid} "$_vc" {mode}\n'.encode())
    return lines


def helper_definition(token: str) -> str:
    """The shell function ``_vt`` (POSIX sh) that runs and frames one command; one line."""
    return (
        f"_vtd=$(mktemp -d /tmp/.vmtest-XXXXXX); _vtm='{token}'; "
        "_vt() { "
        '( set -eu; (set -o pipefail) 2>/dev/null && set -o pipefail; eval "$(printf %b "$2")" ) '
        '</dev/null >"$_vtd/o" 2>"$_vtd/e"; _vs=$?; '
        'printf \'%sS %s %s %s %s\\n\' "$_vtm" "$1" "$_vs" "$(cksum <"$_vtd/o")" "$(cksum <"$_vtd/e")"; '
        'if [ "$3" = b ]; then base64 <"$_vtd/o"; base64 <"$_vtd/e"; else cat "$_vtd/o" "$_vtd/e"; fi; '
        'printf \'%sE %s\\n\' "$_vtm" "$1"; }'
    )


_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def cksum(data: bytes) -> int:
    """POSIX ``cksum``'s CRC of ``data`` (its length folded in, as the command does).

    cksum is the unreflected CRC-32 (polynomial 0x04C11DB7, initial value 0); zlib's is the reflected one:
    on bit-reversed bytes, with its initial and final inversion undone, it computes the bit-reversed
    cksum CRC (at C speed: 1 MiB of output is checked in milliseconds).
    """
    n = len(data)
    length = bytearray()
    while n:
        length.append(n & 0xFF)
        n >>= 8
    raw = zlib.crc32((data + bytes(length)).translate(_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return ~int(f"{raw:032b}"[::-1], 2) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    status: int
    stdout: bytes
    stderr: bytes
    cleaned: bool  # foreign console lines were removed to read it


def _header(token: str, rid: str) -> re.Pattern[bytes]:
    return re.compile(re.escape(f"{token}S {rid} ".encode()) + rb"(\d+) (\d+) (\d+) (\d+) (\d+)\n")


def _end(token: str, rid: str) -> bytes:
    return f"{token}E {rid}\n".encode()


def without_foreign(data: bytes) -> bytes:
    """``data`` without kernel records and systemd status lines (CR LF ended: not the shell's output)."""
    return STATUS.sub(b"", PRINTK.sub(b"", data))


def _payload(region: bytes, sizes: tuple[int, int], crcs: tuple[int, int], binary: bool) -> tuple[bytes, bytes] | None:
    if binary:
        text = ANY_CR_LINE.sub(b"", region).replace(b"\n", b"")
        out_len = (sizes[0] + 2) // 3 * 4
        try:
            parts = (base64.b64decode(text[:out_len], validate=True), base64.b64decode(text[out_len:], validate=True))
        except (binascii.Error, ValueError):
            return None
    else:
        if len(region) != sizes[0] + sizes[1]:
            return None
        parts = (region[: sizes[0]], region[sizes[0] :])
    for part, size, crc in zip(parts, sizes, crcs, strict=True):
        if len(part) != size or cksum(part) != crc:
            return None
    return parts


def parse_frame(stream: bytes, token: str, rid: str, binary: bool) -> Frame | None:
    """The frame of request ``rid`` in ``stream`` (what the console printed since it was sent).

    None while the frame is incomplete; :class:`FrameCorrupted` when it is complete but no view of it
    (foreign lines removed, or as it came) has the announced sizes and CRCs.
    """
    header, end = _header(token, rid), _end(token, rid)
    complete = False
    cleaned_view = without_foreign(stream)
    views = [(True, cleaned_view), (False, stream)] if cleaned_view != stream else [(False, stream)]
    for cleaned, view in views:
        head = header.search(view)
        if head is None:
            continue
        stop = view.find(end, head.end())
        if stop == -1:
            continue
        complete = True
        status, crc_out, size_out, crc_err, size_err = (int(g) for g in head.groups())
        parts = _payload(view[head.end() : stop], (size_out, size_err), (crc_out, crc_err), binary)
        if parts is not None:
            return Frame(status, parts[0], parts[1], cleaned)
    if not complete:
        return None
    raise FrameCorrupted(
        f"the output of command {rid} does not match the size and CRC the guest sent, in any reading of the "
        f"console (other writers interleaved with it in a way that cannot be undone); run it again with "
        f"binary output (base64), or quieten the console (dmesg -n 1). Stream: {stream[-400:]!r}"
    )
