"""Reading text off screenshots (pure: images in, text out; no QEMU).

Two readers (:mod:`vmtest.machine.grid`, :mod:`vmtest.machine.tesseract`); this module
combines them:

* The *grid reader*, exact and fast, for screens that are a character grid
  drawn from one bitmap font (the Linux framebuffer console, VGA text mode).
  The screenshot is cut into cells; each cell becomes a 1-bit "ink" bitmap
  (pixels that differ from the background) looked up in a
  :class:`GlyphTable`. The table is calibrated from a screenshot of every
  printable character printed on a tty of the same guest
  (:func:`calibrate`), so it knows that font exactly.
* Tesseract, for everything else (X11, arbitrary fonts), run on several
  enhanced variants of the screenshot (:data:`VARIANTS`) in parallel, through
  pytesseract and vmtest's ``tesseract-wrapper`` (tesseract dies with us).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from PIL import Image

from vmtest.machine.grid import (
    CALIBRATION_CHARS,
    UNKNOWN,
    CalibrationError,
    GlyphTable,
    calibrate,
    calibration_layout,
    read_grid,
)
from vmtest.machine.tesseract import (
    PRIMARY_VARIANT,
    TESSERACT_ARGS,
    VARIANTS,
    content_box,
    read_variant,
    read_variants,
    tesseract,
    tesseract_wrapper,
)

__all__ = [
    "CALIBRATION_CHARS",
    "PRIMARY_VARIANT",
    "TESSERACT_ARGS",
    "UNKNOWN",
    "VARIANTS",
    "CalibrationError",
    "GlyphTable",
    "ScreenText",
    "calibrate",
    "calibration_layout",
    "content_box",
    "read_grid",
    "read_screen",
    "read_variant",
    "read_variants",
    "tesseract",
    "tesseract_wrapper",
]


@dataclass(frozen=True)
class ScreenText:
    """What the readers saw on one screenshot: reader name -> text."""

    readings: dict[str, str]
    elapsed: float
    exact: bool = False  # the grid reader knew every cell: tesseract cannot add anything

    def search(self, regex: re.Pattern[str]) -> str | None:
        """The name of the first reading in which ``regex`` matches, or None."""
        for name, text in self.readings.items():
            if regex.search(text):
                return name
        return None


def read_screen(image: Image.Image, tables: list[GlyphTable], logger: logging.Logger, all_variants: bool) -> ScreenText:
    """``grid`` when the screen is a character grid of one of ``tables`` (tried in order);
    tesseract's variants when ``all_variants`` or the screen is not (entirely) a known grid;
    else only the grid."""
    start = time.monotonic()
    readings: dict[str, str] = {}
    grid = None
    for table in tables:
        grid = read_grid(image, table)
        if grid is not None:
            break
    if grid is not None:
        readings["grid"] = grid.text
    if all_variants:
        readings.update(read_variants(image, logger))
    elif grid is None:
        readings[PRIMARY_VARIANT] = read_variant(image, PRIMARY_VARIANT, logger)
    return ScreenText(readings, time.monotonic() - start, grid is not None and grid.complete)
