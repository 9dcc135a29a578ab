"""The grid reader and the variant generation, on synthetic screens (no QEMU, no tesseract)."""

import random

import pytest
from PIL import Image

from vmtest.machine import ocr

CELL = (8, 16)
SCREEN = (160, 96)  # 20 x 6 cells


def make_font(seed: int = 1) -> dict[str, list[list[int]]]:
    rng = random.Random(seed)
    font = {}
    for char in ocr.CALIBRATION_CHARS:
        # rows 0..12 random, bottom rows empty like most console glyphs; '_' has row 13
        bitmap = [[rng.random() < 0.3 for _ in range(CELL[0])] if r < 13 else [0] * CELL[0] for r in range(CELL[1])]
        font[char] = bitmap
    font["_"] = [[0] * CELL[0] for _ in range(13)] + [[1] * CELL[0]] + [[0] * CELL[0]] * 2
    return font


def render(lines, font, fg=(170, 170, 170), bg=(0, 0, 0), cursor=None, cells_style=None):
    image = Image.new("RGB", SCREEN, bg)
    px = image.load()
    cols, rows = SCREEN[0] // CELL[0], SCREEN[1] // CELL[1]
    for r in range(rows):
        text = lines[r] if r < len(lines) else ""
        for c in range(cols):
            char = text[c] if c < len(text) else " "
            cfg, cbg = (cells_style or {}).get((r, c), (fg, bg))
            bitmap = font.get(char)
            for y in range(CELL[1]):
                for x in range(CELL[0]):
                    on = bool(bitmap[y][x]) if bitmap else False
                    if cursor == (r, c) and y >= CELL[1] - 2:
                        on = not on
                    px[c * CELL[0] + x, r * CELL[1] + y] = cfg if on else cbg
    return image


@pytest.fixture(scope="module")
def font():
    return make_font()


@pytest.fixture(scope="module")
def table(font):
    cols = SCREEN[0] // CELL[0]
    chart = render(ocr.calibration_layout(cols), font)
    return ocr.calibrate(chart, CELL)


def test_calibration_learns_every_character(table):
    assert len(table.glyphs) == len(ocr.CALIBRATION_CHARS)
    assert table.grid == (20, 6)
    assert ocr.GlyphTable.from_json(table.to_json()) == table


def test_calibration_refuses_a_screen_without_the_chart(font):
    with pytest.raises(ocr.CalibrationError, match="empty"):
        ocr.calibrate(render([], font), CELL)


def test_grid_reads_text_exactly(font, table):
    lines = ["root@vm1:~# ls /etc", "O0 l1 I| vm1 um", "", "a-b_c {x} 'q' \"z\"", "~/path/to.file:42"]
    read = ocr.read_grid(render(lines, font), table)
    assert read is not None and read.complete
    assert read.text == "\n".join(lines)


def test_grid_reads_coloured_and_inverse_video_cells(font, table):
    styles = {
        (0, 0): ((0, 170, 0), (0, 0, 0)),
        (0, 1): ((0, 0, 170), (0, 0, 0)),
        (1, 0): ((0, 0, 0), (170, 170, 170)),
        (1, 1): ((255, 255, 255), (0, 0, 170)),
    }
    read = ocr.read_grid(render(["OK", "Ab"], font, cells_style=styles), table)
    assert read is not None and read.text == "OK\nAb"


def test_grid_sees_through_an_underline_cursor(font, table):
    read = ocr.read_grid(render(["login: ", "x"], font, cursor=(0, 7)), table)
    assert read is not None and read.text == "login:\nx"
    read = ocr.read_grid(render(["abc", "x"], font, cursor=(0, 1)), table)
    assert read is not None and read.text == "abc\nx"
    # the underscore is not mistaken for a cursor on an empty cell
    assert ocr.read_grid(render(["a_b"], font), table).text == "a_b"


def test_a_screen_that_is_not_this_grid_is_refused(font, table):
    assert ocr.read_grid(Image.new("RGB", (200, 100)), table) is None  # other size
    other = make_font(seed=2)
    assert ocr.read_grid(render(["hello world", "xyz"], other), table) is None


def test_unknown_cells_read_as_replacement_character(font, table):
    lines = ["abcdefghijklmnopqrst", "abcdefghij"]
    weird = {**font, "\x01": [[1, 0] * 4 for _ in range(CELL[1])]}
    read = ocr.read_grid(render([lines[0], lines[1] + "\x01"], weird), table)
    assert read is not None and not read.complete
    assert read.text.splitlines()[1] == "abcdefghij" + ocr.UNKNOWN


def test_blank_screen_reads_as_empty_grid(table):
    read = ocr.read_grid(Image.new("RGB", SCREEN), table)
    assert read is not None and read.text == "" and read.complete


def test_variants_are_dark_text_on_light_and_crop_to_content(font):
    image = render(["hello"], font)
    box = ocr.content_box(image, margin=0)
    assert box is not None and box[0] == 0 and box[1] == 0 and box[3] <= CELL[1]
    assert ocr.content_box(Image.new("RGB", SCREEN)) is None
    for name, make in ocr.VARIANTS.items():
        variant = make(image)
        if name != "raw":
            assert variant.size == (SCREEN[0] * 2, SCREEN[1] * 2), name
            background = max(variant.convert("L").getcolors(1 << 16))[1]
            assert (background > 128) == (name != "inverted-2x"), name
    assert set(ocr.VARIANTS) >= {ocr.PRIMARY_VARIANT}


def test_screen_text_search_names_the_reading_that_matched():
    text = ocr.ScreenText({"grid": "vm1 login:", "raw": "um1 login:"}, 0.1)
    import re

    assert text.search(re.compile(r"vm1 login")) == "grid"
    assert text.search(re.compile(r"um1")) == "raw"
    assert text.search(re.compile(r"nothing")) is None


def test_terminal_window_grid_is_found_anywhere_and_its_edges_dropped(font, table):
    floating = ocr.GlyphTable(table.screen, table.cell, table.glyphs, floating=True)
    text = render(["hello vm1", "O0 l1 /etc"], font)
    screen = Image.new("RGB", (SCREEN[0] + 40, SCREEN[1] + 40), (0, 0, 0))
    screen.paste(text, (13, 7))
    # a window border: a vertical line right of the text, through partial cells
    for y in range(7, 7 + SCREEN[1]):
        screen.putpixel((13 + SCREEN[0] + 3, y), (255, 255, 255))
    read = ocr.read_grid(screen, floating)
    assert read is not None
    assert read.text == "hello vm1\nO0 l1 /etc"
    assert ocr.read_grid(screen, table) is None  # a console table only reads whole screens
