"""A machine's display: screenshots, OCR, and the glyph-table calibration.

``Screen`` is one part of :class:`~vmtest.machine.Machine`. It takes
screenshots through QMP ``screendump`` (PNG, no ImageMagick), reads them with
:mod:`vmtest.ocr`, and calibrates the grid reader on the guest itself: it
prints every printable character on tty12, switches to it, screendumps and
switches back. The resulting :class:`~vmtest.ocr.GlyphTable` is cached in
the image cache (``glyphs/``), keyed by what decides the console font: the
kernel, the kernel parameters and the resolution.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops

from vmtest.core import statedirs
from vmtest.core.errors import MachineError, NoDisplay, TextNotFound
from vmtest.core.retry import retry
from vmtest.machine import ocr, tesseract
from vmtest.machine.commands import Commands

CALIBRATION_TTY = 12

# VT_ACTIVATE / VT_WAITACTIVE through perl (perl-base is essential in Debian,
# chvt is not): the argument is the VT number.
_CHVT = (
    'perl -e \'open(my $t, "+<", "/dev/tty0") or die "/dev/tty0: $!"; '
    'ioctl($t, 0x5606, $ARGV[0] + 0) or die "VT_ACTIVATE: $!"; '
    'ioctl($t, 0x5607, $ARGV[0] + 0) or die "VT_WAITACTIVE: $!"\''
)


class Screen:
    def __init__(self, commands: Commands, output_dir: Path) -> None:
        self.commands = commands
        self.vm = commands.vm
        self.output_dir = output_dir  # where screenshots go (the plugin points it at the test's directory)
        self._table: ocr.GlyphTable | None = None
        self._calibrated = False
        self.terminal_tables: list[ocr.GlyphTable] = []  # from calibrate_terminal()

    # -- screenshots ---------------------------------------------------------

    def require_display(self, action: str) -> None:
        if not self.vm.config.virtualisation.graphics:
            raise NoDisplay(
                self.vm.name,
                action,
                "the machine has no display: it was configured with virtualisation.graphics=False "
                "(remove that option, or set it to True, to get a virtual screen)",
            )

    def dump(self, path: Path) -> Path:
        """QMP ``screendump`` of the display into the PNG ``path`` (the machine starts if it is not running)."""
        self.require_display("taking a screenshot")
        monitor = self.vm.monitor()
        path.parent.mkdir(parents=True, exist_ok=True)
        monitor.command("screendump", filename=str(path.absolute()), format="png")
        return path

    def grab(self) -> Image.Image:
        """A screenshot as an in-memory image."""
        with tempfile.TemporaryDirectory(prefix="vmtest-screen-") as tmp:
            statedirs.mark(Path(tmp))
            path = self.dump(Path(tmp) / "screen.png")
            with Image.open(path) as im:
                return im.convert("RGB")

    def screenshot(self, name: str) -> Path:
        """Save a screenshot as ``<output dir>/<name>.png``; return its path."""
        with self.vm.nested(f"taking screenshot {name}"):
            filename = name if name.endswith(".png") else f"{name}.png"
            path = self.dump(self.output_dir / filename)
            self.vm.log(f"screenshot saved: {path}")
            return path

    # -- the glyph table -----------------------------------------------------------

    def _cache_path(self) -> Path:
        vm = self.vm
        image = vm.image or vm.store.get(vm.config)
        key = json.dumps([str(image.kernel), list(vm.config.virtualisation.resolution), list(vm.config.kernel_params)])
        return vm.store.cache.glyph_table(hashlib.sha256(key.encode()).hexdigest()[:20])

    def glyph_table(self) -> ocr.GlyphTable | None:
        """The console font's glyph table: from the cache, else calibrated now (once per machine)."""
        if self._calibrated:
            return self._table
        if self.vm.config.image is not None:  # a foreign guest: no calibration over its shell (yet); tesseract
            self._calibrated = True
            return None
        path = self._cache_path()
        if path.exists():
            self._calibrated = True
            self._table = ocr.GlyphTable.from_json(path.read_text())
            return self._table
        if self.grab().size != tuple(self.vm.config.virtualisation.resolution):
            # Early boot (VGA text mode, before the framebuffer console takes over at the
            # configured resolution): nothing to calibrate yet; try again on the next read.
            return None
        self._calibrated = True
        try:
            self._table = self.calibrate()
        except (ocr.CalibrationError, MachineError) as exc:
            self.vm.log(f"the grid reader is off (calibration failed: {exc}); reading screens with tesseract")
            return None
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(self._table.to_json())
        os.replace(tmp, path)
        return self._table

    def calibrate(self) -> ocr.GlyphTable:
        """Print every printable character on tty12, show it, screendump it, and switch back."""
        m = self.vm
        tty = f"/dev/tty{CALIBRATION_TTY}"
        with m.nested("calibrating the grid reader (the console font) on tty12"):
            size = self.commands.must(f"stty -F {tty} size").split()
            rows, cols = int(size[0]), int(size[1])
            chart = "\r\n".join(ocr.calibration_layout(cols))
            state = self.commands.must(
                'read -r level _ < /proc/sys/kernel/printk; echo "$(cat /sys/class/tty/tty0/active) $level"; '
                "echo 1 > /proc/sys/kernel/printk; "
                f"printf '\\033[?25l\\033[H\\033[2J%s' {shlex.quote(chart)} > {tty}; "
                f"{_CHVT} {CALIBRATION_TTY}"
            ).split()
            previous, level = state[0], state[1]
            try:
                last: list[Exception] = []

                def attempt(_: bool) -> ocr.GlyphTable | None:
                    image = self.grab()
                    if image.size != tuple(m.config.virtualisation.resolution):
                        last[:] = [
                            ocr.CalibrationError(
                                f"the screen is {image.width}x{image.height}, not the "
                                "configured resolution (no framebuffer console?)"
                            )
                        ]
                        return None
                    cell = (image.width // cols, image.height // rows)
                    try:
                        return ocr.calibrate(image, cell)
                    except ocr.CalibrationError as exc:
                        last[:] = [exc]
                        return None

                table = retry(attempt, 5, interval=0.2)
                if table is None:
                    raise ocr.CalibrationError(str(last[0]) if last else "no screenshot")
            finally:
                back = previous[3:] if previous.startswith("tty") and previous[3:].isdigit() else "1"
                self.commands.execute(
                    f"printf '\\033[H\\033[2J\\033[?25h' > {tty}; echo {shlex.quote(level)} > /proc/sys/kernel/printk; "
                    f"{_CHVT} {back}"
                )
            self.vm.log(
                f"grid reader: {len(table.glyphs)} glyphs of {table.cell[0]}x{table.cell[1]} pixels, "
                f"{cols}x{rows} cells"
            )
            return table

    def calibrate_terminal(self, tty: str) -> ocr.GlyphTable:
        """Teach the grid reader the font of a terminal window (e.g. an xterm) whose
        pty is ``tty`` in the guest: it prints an inverse-video bar (its box gives the
        cell size and origin) and every printable character there, then clears it.
        From then on, screens showing that font are read exactly wherever the window is."""
        m = self.vm
        t = shlex.quote(tty)
        with m.nested(f"calibrating the grid reader on the terminal {tty}"):
            rows, cols = (int(v) for v in self.commands.must(f"stty -F {t} size").split())
            self.commands.must(f"printf '\\033[?25l\\033[H\\033[2J' > {t}")
            time.sleep(0.5)
            before = self.grab()
            chart = shlex.quote(chr(10).join(ocr.calibration_layout(cols)))
            self.commands.must(f"printf '\\033[7m%{cols}s\\033[0m\\r\\n%s' '' {chart} > {t}")

            def attempt(_: bool) -> ocr.GlyphTable | None:
                after = self.grab()
                changed = ImageChops.difference(before.convert("L"), after.convert("L")).point(
                    lambda v: 255 if v else 0
                )
                box = changed.getbbox()  # the bar (row 0, all columns) and the chart below it
                if box is None:
                    return None
                cell = ((box[2] - box[0]) // cols, _bar_height(changed.crop(box)))
                try:
                    return ocr.calibrate(after, cell, origin=(box[0], box[1] + cell[1]), columns=cols, floating=True)
                except ocr.CalibrationError:
                    return None

            try:
                table = retry(attempt, 5, interval=0.3)
            finally:
                self.commands.execute(f"printf '\\033[H\\033[2J\\033[?25h' > {t}")
            if table is None:
                raise ocr.CalibrationError(f"the calibration chart did not show up on {tty}")
            self.terminal_tables.append(table)
            self.vm.log(
                f"grid reader: terminal font of {table.cell[0]}x{table.cell[1]} pixels, {len(table.glyphs)} glyphs"
            )
            return table

    # -- reading -------------------------------------------------------------------

    def read(self, all_variants: bool) -> tuple[Image.Image, ocr.ScreenText]:
        self.require_display("reading the screen")
        console = self.glyph_table()
        tables = ([console] if console is not None else []) + self.terminal_tables
        image = self.grab()
        return image, ocr.read_screen(image, tables, self.vm.logger, all_variants)

    def text(self) -> str:
        with self.vm.nested("reading the screen"):
            _, result = self.read(all_variants=False)
            name, text = next(iter(result.readings.items()))
            self.vm.logger.debug("%s: screen read by %s in %.2fs", self.vm.name, name, result.elapsed)
            return text

    def variants(self) -> list[str]:
        with self.vm.nested("reading the screen (all variants)"):
            _, result = self.read(all_variants=True)
            return list(result.readings.values())

    def wait_for_text(self, regex: str, timeout: float) -> str:
        """Poll fresh screenshots until ``regex`` matches a reading; return that reading."""
        with self.vm.nested(f"waiting for {regex!r} on the screen"):
            pattern = re.compile(regex, re.MULTILINE)
            start = time.monotonic()
            last: dict[str, object] = {}

            def check(_: bool) -> str | None:
                image, result = self.read(all_variants=False)
                if result.search(pattern) is None and not result.exact:
                    # Not an exact grid read: try every tesseract variant too.
                    result = ocr.ScreenText(
                        {
                            **result.readings,
                            **tesseract.read_variants(
                                image, self.vm.logger, [n for n in tesseract.VARIANTS if n not in result.readings]
                            ),
                        },
                        result.elapsed,
                    )
                last.update(image=image, result=result)
                name = result.search(pattern)
                return result.readings[name] if name is not None else None

            found = retry(check, timeout)
            if found is not None:
                return found
            shot = None
            image = last.get("image")
            if isinstance(image, Image.Image):
                shot = self.output_dir / f"wait_for_text-timeout-{time.strftime('%H%M%S')}.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                image.save(shot)
            result = last.get("result")
            readings = dict(result.readings) if isinstance(result, ocr.ScreenText) else {}
            if isinstance(image, Image.Image):  # the error shows every reader's view of the last screen
                readings.update(
                    tesseract.read_variants(image, self.vm.logger, [n for n in tesseract.VARIANTS if n not in readings])
                )
            raise TextNotFound(
                self.vm.name,
                regex,
                timeout,
                time.monotonic() - start,
                shot,
                readings,
                self.vm.console_tail(since=start),
            )


def _bar_height(bar: Image.Image) -> int:
    """Rows from the top of ``bar`` (a 1-bit-like mask) that are entirely set: the bar's height."""
    width, height = bar.size
    px = bar.load()
    if px is None:  # Pillow returns None only for an image without pixel data
        raise ValueError("the inverse-video bar has no pixel data")
    for y in range(height):
        if any(px[x, y] == 0 for x in range(0, width, 3)):
            return y
    return height
