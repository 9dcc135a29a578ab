"""Key names and characters -> QEMU key codes (pure; no QEMU needed).

``send_key("ctrl-alt-delete")`` presses the keys of a combination together;
each name is a QEMU ``QKeyCode`` (the names HMP's ``sendkey`` takes) or one
of a few friendly aliases (``enter``, ``space``, ``escape``, ...).
``send_chars`` types text on a US keyboard layout (the kernel's default
keymap, which Debian guests without console-setup use): every printable
ASCII character and newline, shifted characters pressed with ``shift``.
"""

from __future__ import annotations

import difflib

# QAPI's QKeyCode enum (QEMU 7.2), the names QMP send-key accepts as "qcode".
QKEYCODES = frozenset(
    """
unmap shift shift_r alt alt_r ctrl ctrl_r menu esc 1 2 3 4 5 6 7 8 9 0 minus equal backspace tab
q w e r t y u i o p bracket_left bracket_right ret a s d f g h j k l semicolon apostrophe grave_accent
backslash z x c v b n m comma dot slash asterisk spc caps_lock f1 f2 f3 f4 f5 f6 f7 f8 f9 f10
num_lock scroll_lock kp_divide kp_multiply kp_subtract kp_add kp_enter kp_decimal sysrq kp_0 kp_1
kp_2 kp_3 kp_4 kp_5 kp_6 kp_7 kp_8 kp_9 less f11 f12 print home pgup pgdn end left up down right
insert delete stop again props undo front copy open paste find cut lf help meta_l meta_r compose
pause ro hiragana henkan yen muhenkan katakanahiragana kp_comma kp_equals power sleep wake audionext
audioprev audiostop audioplay audiomute volumeup volumedown mediaselect mail calculator computer
ac_home ac_back ac_forward ac_refresh ac_bookmarks lang1 lang2
""".split()
)

ALIASES = {
    "enter": "ret",
    "return": "ret",
    "space": "spc",
    "escape": "esc",
    "del": "delete",
    "page_up": "pgup",
    "pageup": "pgup",
    "page_down": "pgdn",
    "pagedown": "pgdn",
    "control": "ctrl",
    "super": "meta_l",
    "win": "meta_l",
    "backtab": "tab",
    "bs": "backspace",
    "period": "dot",
    "grave": "grave_accent",
    "caps": "caps_lock",
    "print_screen": "print",
    "ins": "insert",
}

# Unshifted characters of the US layout.
_PLAIN = {
    **{c: c for c in "abcdefghijklmnopqrstuvwxyz0123456789"},
    " ": "spc",
    "\n": "ret",
    "\t": "tab",
    "-": "minus",
    "=": "equal",
    "[": "bracket_left",
    "]": "bracket_right",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    "`": "grave_accent",
    ",": "comma",
    ".": "dot",
    "/": "slash",
}
# Characters typed with shift, and the key they are on.
_SHIFTED = {
    **{c.upper(): c for c in "abcdefghijklmnopqrstuvwxyz"},
    "!": "1",
    "@": "2",
    "#": "3",
    "$": "4",
    "%": "5",
    "^": "6",
    "&": "7",
    "*": "8",
    "(": "9",
    ")": "0",
    "_": "minus",
    "+": "equal",
    "{": "bracket_left",
    "}": "bracket_right",
    "|": "backslash",
    ":": "semicolon",
    '"': "apostrophe",
    "~": "grave_accent",
    "<": "comma",
    ">": "dot",
    "?": "slash",
}


class UnknownKey(ValueError):
    """A key name or character that cannot be typed."""


def key_code(name: str) -> str:
    """The QKeyCode of one key name (case-insensitive; aliases allowed)."""
    low = name.strip().lower()
    if low in QKEYCODES:
        return low
    if low in ALIASES:
        return ALIASES[low]
    close = difflib.get_close_matches(low, sorted(QKEYCODES | set(ALIASES)), n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownKey(f"unknown key name {name!r}{hint} (QEMU key names: ret, spc, esc, f1, ctrl, alt, ...)")


def parse_combo(combo: str) -> list[str]:
    """``"ctrl-alt-delete"`` -> ``["ctrl", "alt", "delete"]``: keys pressed together.

    Names are separated by ``-``; a literal ``-`` key is ``minus`` (``"ctrl-minus"``),
    and a single character (``"a"``, ``"-"``, ``"A"``) is accepted as in ``send_chars``.
    """
    if len(combo) == 1:
        return char_keys(combo)
    if not combo or combo.startswith("-") or combo.endswith("-") or "--" in combo:
        raise UnknownKey(f"malformed key combination {combo!r} (write the '-' key as 'minus', e.g. 'ctrl-minus')")
    return [key_code(part) for part in combo.split("-")]


def char_keys(char: str) -> list[str]:
    """The keys (pressed together) that type ``char`` on a US keyboard."""
    if char in _PLAIN:
        return [_PLAIN[char]]
    if char in _SHIFTED:
        return ["shift", _SHIFTED[char]]
    if char == "\r":
        return ["ret"]
    raise UnknownKey(f"cannot type {char!r}: send_chars types printable ASCII, tab and newline")


def text_keys(text: str) -> list[list[str]]:
    """One key combination per character of ``text`` (raises :class:`UnknownKey` before anything is typed)."""
    return [char_keys(c) for c in text]


def qmp_keys(keys: list[str]) -> list[dict[str, str]]:
    """The ``keys`` argument of QMP ``send-key``."""
    return [{"type": "qcode", "data": k} for k in keys]
