#!/usr/bin/env python3
"""OCR benchmark on screenshots of real guests (made by make_dataset.py).

    .venv/bin/python benchmarks/ocr/bench.py [--screens benchmarks/ocr/screens]

For every ``NNN-<kind>.png`` with its exact text ``NNN-<kind>.txt``, reads the
image the way vmtest does (no guest needed: the grid reader's glyph tables are
``glyphs*.json``, calibrated on the guest that produced the screens: the
console font, and each xterm font through ``Screen.calibrate_terminal``) and prints:

* per-line accuracy of ``get_screen_text`` and of every single reader: the
  share of the expected non-empty lines that appear exactly as a line of the
  reading ("exact"), and with runs of spaces counted as one ("~space");
* the share of lines ``wait_for_text(re.escape(line))`` would find (the line
  occurs in any reading of ``get_screen_text_variants``), exact and ~space;
* the time per ``get_screen_text`` call and per ``get_screen_text_variants``
  call (median and max), by kind of screen.

Nothing fails here; the targets from the issue are printed beside the numbers.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image  # noqa: E402

from vmtest.machine import ocr  # noqa: E402


def squash(text: str) -> str:
    return re.sub(r" +", " ", text.strip())


def lines_found(expected: list[str], reading: str, loose: bool) -> int:
    norm = squash if loose else (lambda s: s)
    got = {norm(line) for line in reading.splitlines()}
    return sum(norm(line) in got for line in expected)


def found_by_wait(expected: list[str], readings: list[str], loose: bool) -> int:
    norm = squash if loose else (lambda s: s)
    texts = ["\n".join(norm(x) for x in r.splitlines()) for r in readings]
    return sum(any(re.search(re.escape(norm(line)), t, re.MULTILINE) for t in texts) for line in expected)


def pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:6.1f}%" if total else "   n/a"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--screens", default=str(Path(__file__).parent / "screens"))
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument(
        "--no-terminal-tables",
        action="store_true",
        help="only the console's glyph table: X11 screens go to tesseract (as without Screen.calibrate_terminal)",
    )
    args = parser.parse_args()
    logger = logging.getLogger("vmtest.bench")
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.screens)
    # the console's table first, then the terminal fonts' (as Screen tries them)
    pattern = "glyphs.json" if args.no_terminal_tables else "glyphs*.json"
    tables = [
        ocr.GlyphTable.from_json(p.read_text())
        for p in sorted(root.glob(pattern), key=lambda p: p.name != "glyphs.json")
    ]
    screens = sorted(root.glob("*.png"))
    if not screens:
        print(f"no screenshots in {root}; run make_dataset.py first")
        return 1
    readers = ["get_screen_text", "grid", *ocr.VARIANTS]
    total: dict[str, int] = defaultdict(int)  # kind -> lines
    hits: dict[tuple[str, str, bool], int] = defaultdict(int)  # (kind, reader, loose) -> lines read
    wait_hits: dict[tuple[str, bool], int] = defaultdict(int)
    t_text: dict[str, list[float]] = defaultdict(list)
    t_variants: dict[str, list[float]] = defaultdict(list)
    count: dict[str, int] = defaultdict(int)
    for png in screens:
        kind = png.stem.split("-", 1)[1]
        expected = [line.rstrip() for line in png.with_suffix(".txt").read_text().splitlines() if line.strip()]
        with Image.open(png) as im:
            image = im.convert("RGB")
        count[kind] += 1
        total[kind] += len(expected)
        start = time.monotonic()
        single = ocr.read_screen(image, tables, logger, all_variants=False)
        t_text[kind].append(time.monotonic() - start)
        start = time.monotonic()
        every = ocr.read_screen(image, tables, logger, all_variants=True)
        t_variants[kind].append(time.monotonic() - start)
        text = next(iter(single.readings.values()))
        readings = {"get_screen_text": text, **every.readings}
        for loose in (False, True):
            for name in readers:
                if name in readings:
                    hits[(kind, name, loose)] += lines_found(expected, readings[name], loose)
            wait_hits[(kind, loose)] += found_by_wait(expected, list(every.readings.values()), loose)
        if args.show_misses:
            for line in expected:
                if lines_found([line], text, True) == 0:
                    print(f"{png.name}: get_screen_text missed: {line!r}")
    kinds = sorted(total)
    all_lines = sum(total.values())
    print(
        f"\nOCR benchmark: {len(screens)} screenshots of real guests "
        f"({', '.join(f'{count[k]} {k}' for k in kinds)}), {all_lines} non-empty lines; "
        f"{os.cpu_count()} cores; tesseract variants in parallel; glyph tables: "
        + ", ".join(f"{t.cell[0]}x{t.cell[1]}{' (window)' if t.floating else ''}" for t in tables)
    )
    print("\nper-line accuracy (exact / runs of spaces as one)")
    head = f"{'reader':28}" + "".join(f"{k + ' exact':>16}{k + ' ~space':>16}" for k in [*kinds, "all"])
    print(head)
    print("-" * len(head))
    for name in readers:
        row = f"{name:28}"
        for kind in [*kinds, "all"]:
            for loose in (False, True):
                ks = kinds if kind == "all" else [kind]
                n = sum(hits[(k, name, loose)] for k in ks)
                row += f"{pct(n, sum(total[k] for k in ks)):>16}"
        print(row)
    row = f"{'found by wait_for_text':28}"
    for kind in [*kinds, "all"]:
        ks = kinds if kind == "all" else [kind]
        for loose in (False, True):
            row += f"{pct(sum(wait_hits[(k, loose)] for k in ks), sum(total[k] for k in ks)):>16}"
    print(row + "   (target >= 98%)")
    print("\ntime per call (seconds)")
    print(f"{'call':34}{'kind':>10}{'median':>10}{'max':>10}")
    for label, times in (("get_screen_text", t_text), ("get_screen_text_variants", t_variants)):
        for kind in [*kinds, "all"]:
            values = [v for k in (kinds if kind == "all" else [kind]) for v in times[k]]
            target = "   (target <= 1 s)" if label == "get_screen_text" and kind == "all" else ""
            print(f"{label:34}{kind:>10}{statistics.median(values):>10.3f}{max(values):>10.3f}{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
