"""The grid reader: exact text from screens that are a character grid (pure: images in, text out).

The Linux framebuffer console, VGA text mode and terminal windows with a
bitmap font draw every character from one font into a fixed grid of cells.
The screenshot is cut into cells; each cell becomes a 1-bit "ink" bitmap
(pixels that differ from the background) looked up in a :class:`GlyphTable`,
calibrated from a screenshot of every printable character printed on a tty
of the same guest (:func:`calibrate`), so it knows that font exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

# What calibration prints: every printable ASCII character except space
# (space is the empty cell).
CALIBRATION_CHARS = "".join(chr(c) for c in range(0x21, 0x7F))
UNKNOWN = "\ufffd"
# A screenshot is read as a grid when at least this share of its non-empty
# cells are glyphs of the table (a desktop or a logo is far below).
GRID_MIN_SHARE = 0.9
# A terminal window's grid also has the desktop around it (borders, a mouse
# pointer) in its cells.
FLOATING_MIN_SHARE = 0.6
# How many bottom rows a text cursor covers (fbcon draws an underline cursor
# by inverting the cell's bottom rows; other consoles use a block).
_CURSOR_ROWS = (1, 2, 3, 4)


@dataclass(frozen=True)
class GlyphTable:
    """The bitmaps of one console font at one screen size: cell bitmap -> character."""

    screen: tuple[int, int]  # (width, height) of the screenshots it reads
    cell: tuple[int, int]  # (width, height) of one character cell
    glyphs: Mapping[bytes, str] = field(default_factory=dict)
    # False: a console, whose grid starts at the screen's top left (screens of
    # exactly ``screen`` size). True: a terminal window, whose grid may sit
    # anywhere; read_grid searches its pixel offset.
    floating: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        """(columns, rows)."""
        return self.screen[0] // self.cell[0], self.screen[1] // self.cell[1]

    def to_json(self) -> str:
        return json.dumps(
            {
                "screen": self.screen,
                "cell": self.cell,
                "floating": self.floating,
                "glyphs": {k.hex(): v for k, v in self.glyphs.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> GlyphTable:
        data = json.loads(text)
        return cls(
            tuple(data["screen"]),
            tuple(data["cell"]),
            {bytes.fromhex(k): v for k, v in data["glyphs"].items()},
            bool(data.get("floating", False)),
        )


def background(gray: Image.Image) -> int:
    hist = gray.histogram()
    return max(range(256), key=hist.__getitem__)


def ink(gray: Image.Image, background: int) -> Image.Image:
    """A 1-bit image: 1 where a pixel differs from ``background``."""
    lut = [0 if v == background else 255 for v in range(256)]
    return gray.point(lut).convert("1", dither=Image.Dither.NONE)


class _Cells:
    """A screenshot prepared for cutting into cells: ink is whatever differs from the
    screen's most common shade; a cell that is mostly "ink" has its own background
    (inverse video, a coloured bar, a block cursor) and is recomputed against its own
    most common shade."""

    def __init__(self, image: Image.Image) -> None:
        self.gray = image.convert("L")
        self.ink = ink(self.gray, background(self.gray))
        self.size = image.size

    def bits(self, x: int, y: int, cell: tuple[int, int]) -> bytes:
        box = (x, y, x + cell[0], y + cell[1])
        bits = self.ink.crop(box).tobytes()
        if int.from_bytes(bits, "big").bit_count() > cell[0] * cell[1] // 2:
            own = self.gray.crop(box)
            bits = ink(own, background(own)).tobytes()
        return bits

    def grid(self, cell: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> list[list[bytes]]:
        cw, ch = cell
        cols, rows = (self.size[0] - origin[0]) // cw, (self.size[1] - origin[1]) // ch
        return [[self.bits(origin[0] + c * cw, origin[1] + r * ch, cell) for c in range(cols)] for r in range(rows)]


def cell_bitmaps(image: Image.Image, cell: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> list[list[bytes]]:
    """The ink bitmap of every cell, row by row (``bytes``: 1 bit per pixel, rows padded to bytes)."""
    return _Cells(image).grid(cell, origin)


def find_origin(
    cells: _Cells, table: GlyphTable, sample_rows: int = 4, sample_cols: int = 12
) -> tuple[int, int] | None:
    """The pixel offset (0 <= x < cell width, 0 <= y < cell height) at which the most cells of a
    sample near the top left of the screen's content are glyphs of ``table``; None if none are."""
    box = cells.ink.getbbox()
    if box is None:
        return None
    cw, ch = table.cell
    best, best_origin = 0, None
    for dy in range(ch):
        top = dy + max(0, (box[1] - dy) // ch) * ch
        for dx in range(cw):
            left = dx + max(0, (box[0] - dx) // cw) * cw
            hits = 0
            for r in range(sample_rows):
                y = top + r * ch
                if y + ch > cells.size[1]:
                    break
                for c in range(sample_cols):
                    x = left + c * cw
                    if x + cw > cells.size[0]:
                        break
                    if cells.bits(x, y, table.cell) in table.glyphs:
                        hits += 1
            if hits > best:
                best, best_origin = hits, (dx, dy)
    return best_origin if best >= 3 else None


def calibration_layout(columns: int, chars: str = CALIBRATION_CHARS) -> list[str]:
    """The lines calibration prints: ``chars`` row-major, ``columns`` per line."""
    return [chars[i : i + columns] for i in range(0, len(chars), columns)]


class CalibrationError(ValueError):
    """A calibration screenshot does not show the expected characters."""


def calibrate(
    image: Image.Image,
    cell: tuple[int, int],
    chars: str = CALIBRATION_CHARS,
    origin: tuple[int, int] = (0, 0),
    columns: int | None = None,
    floating: bool = False,
) -> GlyphTable:
    """Build the glyph table from a screenshot showing :func:`calibration_layout` with its first
    cell at pixel ``origin`` (``columns``: the terminal's width in cells, default: the screen's)."""
    cols = columns or image.width // cell[0]
    cells = cell_bitmaps(image, cell, origin)
    glyphs: dict[bytes, str] = {}
    blank = bytes(len(cells[0][0]))
    for r, line in enumerate(calibration_layout(cols, chars)):
        for c, char in enumerate(line):
            bits = cells[r][c]
            if bits == blank:
                raise CalibrationError(
                    f"the cell of {char!r} (row {r}, column {c}) is empty: the calibration chart is not on the screen"
                )
            glyphs.setdefault(bits, char)
    if len(glyphs) < len(chars) * 0.9:
        raise CalibrationError(f"only {len(glyphs)} distinct glyphs for {len(chars)} characters")
    return GlyphTable((image.width, image.height), cell, glyphs, floating)


@dataclass(frozen=True)
class GridRead:
    text: str
    share: float  # share of the non-empty cells read that are known glyphs
    unknown: int  # cells read as UNKNOWN

    @property
    def complete(self) -> bool:
        return self.unknown == 0


def _cursor_masks(cell: tuple[int, int]) -> list[int]:
    row_bytes = (cell[0] + 7) // 8
    row = int.from_bytes(
        bytes([0xFF] * (cell[0] // 8) + ([(0xFF << (8 - cell[0] % 8)) & 0xFF] if cell[0] % 8 else [])), "big"
    )
    masks = []
    for n in _CURSOR_ROWS:
        mask = 0
        for r in range(cell[1] - n, cell[1]):
            mask |= row << (8 * row_bytes * (cell[1] - 1 - r))
        masks.append(mask)
    full = 0
    for r in range(cell[1]):
        full |= row << (8 * row_bytes * r)
    return [*masks, full]


def read_grid(image: Image.Image, table: GlyphTable) -> GridRead | None:
    """Read ``image`` as a character grid of ``table``'s font; None if it is not one.

    Cells that match no glyph are retried with a text cursor removed (the
    cursor inverts the cell's bottom rows, or all of it); cells still unknown
    read as U+FFFD. Lines lose trailing spaces; trailing empty lines go.
    """
    prepared = _Cells(image)
    if table.floating:
        origin = find_origin(prepared, table)
        if origin is None:
            return None
    elif image.size != tuple(table.screen):
        return None
    else:
        origin = (0, 0)
    cells = prepared.grid(table.cell, origin)
    nbytes = len(cells[0][0]) if cells and cells[0] else 0
    blank = bytes(nbytes)
    glyphs = table.glyphs
    masks = _cursor_masks(table.cell)
    nonblank = known = 0
    lines = []
    for line in cells:
        chars = []
        for bits in line:
            if bits == blank:
                chars.append(" ")
                continue
            nonblank += 1
            char = glyphs.get(bits)
            if char is None:
                value = int.from_bytes(bits, "big")
                for mask in masks:
                    uncovered = (value ^ mask).to_bytes(nbytes, "big")
                    if uncovered == blank:
                        char = " "
                        break
                    char = glyphs.get(uncovered)
                    if char is not None:
                        break
            if char is None:
                chars.append(UNKNOWN)
            else:
                known += 1
                chars.append(char)
        lines.append("".join(chars).rstrip())
    if table.floating:
        lines = _window_text(lines)
    while lines and not lines[-1]:
        lines.pop()
    # (for a window, cells of its edges dropped above do not count)
    unknown = sum(line.count(UNKNOWN) for line in lines)
    share = known / (known + unknown) if known + unknown else 1.0
    if share < (FLOATING_MIN_SHARE if table.floating else GRID_MIN_SHARE):
        return None
    return GridRead("\n".join(lines), share, unknown)


def _window_text(lines: list[str]) -> list[str]:
    """A terminal window's lines without what surrounds the window: rows and columns whose
    only non-blank cells are unknown (window borders, the desktop's edge) become blank, and
    the blank columns left of the window go."""
    width = max((len(line) for line in lines), default=0)
    grid = [list(line.ljust(width)) for line in lines]

    def edge(cells: list[str]) -> bool:
        marks = [c for c in cells if c != " "]
        return bool(marks) and all(c == UNKNOWN for c in marks)

    for j in range(width):
        if edge([row[j] for row in grid]):
            for row in grid:
                row[j] = " "
    grid = [[" "] * width if edge(row) else row for row in grid]
    out = ["".join(row).rstrip() for row in grid]
    indent = min((len(line) - len(line.lstrip(" ")) for line in out if line), default=0)
    return [line[indent:] for line in out]
