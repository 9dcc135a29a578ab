"""What a guest shows without OCR: virtual-terminal contents and X11 windows.

TTY text comes from ``/dev/vcsa<n>`` (geometry) and ``/dev/vcsu<n>`` (the
cells as UCS-4), through the backdoor: exact, whatever the font. X11 state
comes from the X server itself (``xwininfo``, from ``x11-utils``) on ``:0``.
"""

from __future__ import annotations

import re

from vmtest.machine.commands import Commands

_WINDOW_RE = re.compile(r'^\s*0x[0-9a-f]+ "(.*)": \(', re.MULTILINE)


def parse_vcs(data: bytes) -> str:
    """The text of a virtual terminal from ``vcsa`` header (4 bytes) + ``vcsu`` cells.

    One line per screen row, as wide as the screen: trailing spaces are kept, as NixOS's driver keeps
    them (``"login: "`` matches a prompt), but trailing blank rows are dropped.
    """
    if len(data) < 4:
        raise ValueError(f"short read from the virtual terminal ({len(data)} bytes)")
    rows, cols = data[0], data[1]
    cells = data[4:]
    if len(cells) < rows * cols * 4:
        raise ValueError(f"expected {rows}x{cols} cells, got {len(cells) // 4}")
    lines = []
    for r in range(rows):
        row = cells[r * cols * 4 : (r + 1) * cols * 4]
        chars = (int.from_bytes(row[i : i + 4], "little") for i in range(0, len(row), 4))
        lines.append("".join(chr(c) if c else " " for c in chars))
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse_window_names(xwininfo_tree: str) -> list[str]:
    """Window names from ``xwininfo -root -tree`` (unnamed windows skipped)."""
    return [name for name in _WINDOW_RE.findall(xwininfo_tree) if name]


class Terminals:
    """TTY and X11 queries of one machine, over its backdoor."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def _run(self, command: str, what: str) -> str:
        return self.commands.must(command, what)

    def tty_text(self, tty: int) -> str:
        out = self._run(f"head -c 4 /dev/vcsa{int(tty)}; cat /dev/vcsu{int(tty)}", f"reading /dev/vcsu{tty}")
        return parse_vcs(out.encode(errors="surrogateescape"))

    def wait_until_tty_matches(self, tty: int, regex: str, timeout: float) -> str:
        with self.commands.vm.nested(f"waiting for {regex!r} on tty{tty}"):
            pattern = re.compile(regex, re.MULTILINE)
            last = {"text": ""}

            def check(_: bool) -> bool:
                last["text"] = self.tty_text(tty)
                return pattern.search(last["text"]) is not None

            self.commands.wait_until(
                f"waiting for {regex!r} on tty{tty}", check, timeout, lambda: f"tty{tty} shows:\n{last['text']}"
            )
            return last["text"]

    # -- X11 -----------------------------------------------------------------

    def x_ready(self) -> bool:
        status, _ = self.commands.execute(
            "test -S /tmp/.X11-unix/X0 && "
            "{ ! command -v xwininfo >/dev/null || DISPLAY=:0 xwininfo -root >/dev/null 2>&1; }"
        )
        return status == 0

    def wait_for_x(self, timeout: float) -> None:
        with self.commands.vm.nested("waiting for the X server"):
            self.commands.wait_until(
                "waiting for the X server on :0",
                lambda _: self.x_ready(),
                timeout,
                lambda: "no X server answers on :0 (/tmp/.X11-unix/X0)",
            )

    def window_names(self) -> list[str]:
        out = self._run(
            "command -v xwininfo >/dev/null || { echo 'xwininfo is missing: add the x11-utils package' >&2;"
            " exit 127; }; DISPLAY=:0 xwininfo -root -tree",
            "listing X11 windows",
        )
        return parse_window_names(out)

    def wait_for_window(self, regex: str, timeout: float) -> str:
        with self.commands.vm.nested(f"waiting for an X11 window matching {regex!r}"):
            pattern = re.compile(regex, re.MULTILINE)
            last: dict[str, list[str]] = {"names": []}

            def check(_: bool) -> bool:
                last["names"] = self.window_names() if self.x_ready() else []
                return any(pattern.search(n) for n in last["names"])

            self.commands.wait_until(
                f"waiting for an X11 window matching {regex!r}", check, timeout, lambda: f"windows: {last['names']}"
            )
            return next(n for n in last["names"] if pattern.search(n))
