"""Tesseract, for screens that are not a known grid (X11, arbitrary fonts): several enhanced variants of
the screenshot (:data:`VARIANTS`) read in parallel, through pytesseract and vmtest's ``tesseract-wrapper``
(util-linux ``setpriv --pdeathsig KILL``: tesseract dies with us)."""

from __future__ import annotations

import atexit
import functools
import importlib.resources
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from vmtest.core import statedirs
from vmtest.core.log import log
from vmtest.core.proc import ProcessError
from vmtest.core.threads import signals_to_main
from vmtest.machine.grid import background, ink


def content_box(image: Image.Image, margin: int = 8) -> tuple[int, int, int, int] | None:
    """The bounding box of everything that is not the background colour (plus a margin)."""
    gray = image.convert("L")
    box = ink(gray, background(gray)).getbbox()
    if box is None:
        return None
    return (
        max(0, box[0] - margin),
        max(0, box[1] - margin),
        min(image.width, box[2] + margin),
        min(image.height, box[3] + margin),
    )


def _dark_on_light(gray: Image.Image) -> Image.Image:
    """Tesseract reads dark text on a light background best."""
    return ImageOps.invert(gray) if background(gray) < 128 else gray


def _upscale(image: Image.Image, factor: int = 2) -> Image.Image:
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


def _threshold(gray: Image.Image) -> Image.Image:
    return gray.point(lambda v: 255 if v >= 128 else 0)


# name -> how the screenshot is transformed before tesseract reads it
VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "raw": lambda im: im,
    "gray-2x": lambda im: _upscale(_dark_on_light(im.convert("L"))),
    "threshold-2x": lambda im: _threshold(_upscale(_dark_on_light(im.convert("L")))),
    "inverted-2x": lambda im: _upscale(ImageOps.invert(_dark_on_light(im.convert("L")))),
}
# The variant get_screen_text uses when the screen is not a character grid
# (the best in benchmarks/ocr.py).
PRIMARY_VARIANT = "gray-2x"

TESSERACT_ARGS = ("--psm", "6", "-l", "eng", "-c", "preserve_interword_spaces=1")
# pytesseract adds the config file "txt" (plain text output, tesseract's default anyway).
_PYTESSERACT_CONFIG = "txt"
_PARENT_ENV = "VMTEST_OCR_PARENT"


@functools.cache
def tesseract_wrapper() -> str:
    """The program pytesseract runs instead of ``tesseract``: ``tesseract-wrapper``
    (package data, executable) makes tesseract die with the thread that started it.

    An install that lost the executable bit (or a ``noexec`` mount) gets a copy in a
    private temporary directory, removed at exit."""
    packaged = importlib.resources.files("vmtest.machine") / "tesseract-wrapper"
    with importlib.resources.as_file(packaged) as path:
        if os.access(path, os.X_OK):
            return str(path)
        script = path.read_bytes()
    tmp = str(statedirs.make("vmtest-tesseract-"))  # mode 0700, a fresh name, swept if we are killed
    creator = os.getpid()

    def remove() -> None:
        if os.getpid() == creator:  # not in a forked child that exits
            shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(remove)
    copy = Path(tmp) / "tesseract-wrapper"
    copy.write_bytes(script)
    copy.chmod(0o700)
    return str(copy)


def tesseract(image: Image.Image, logger: logging.Logger, timeout: float = 60) -> str:
    """Run tesseract on ``image`` (one single-threaded process, so variants can run side by
    side) through pytesseract; it dies with us (``tesseract-wrapper``). A failure or a
    timeout (seconds; 0: none) raises :class:`~vmtest.core.proc.ProcessError`."""
    import pytesseract  # here: it imports pandas and numpy when they are installed (slow)

    cmd = tesseract_wrapper()
    # pytesseract reads its program from a module global. vmtest always sets it to this
    # same value before each call, so concurrent calls (variants in threads) agree; other
    # pytesseract users in this process get the wrapper too, which only adds the
    # parent-death signal and one thread per tesseract.
    pytesseract.pytesseract.tesseract_cmd = cmd
    # The wrapper checks that its parent is still this process (pytesseract passes
    # os.environ to tesseract and has no per-call environment): set once per process.
    if os.environ.get(_PARENT_ENV) != str(os.getpid()):
        os.environ[_PARENT_ENV] = str(os.getpid())
    with tempfile.TemporaryDirectory(prefix="vmtest-ocr-") as tmp:
        statedirs.mark(Path(tmp))
        # A file rather than the image: pytesseract would save the PNG at the default
        # compression, about twice as slow (+20-40 ms for a 2x-upscaled 1024x768 screen).
        src = str(Path(tmp) / "in.png")
        image.save(src, compress_level=1)
        # pytesseract picks the output base itself (a temporary file it removes).
        argv = [cmd, src, "OUTPUT", *TESSERACT_ARGS, _PYTESSERACT_CONFIG]
        log(
            logger,
            "$ " + shlex.join(argv) + f"   (pytesseract: OUTPUT is its temporary file; timeout {timeout:g}s)",
            level=logging.DEBUG,
        )
        try:
            # lang=None: "-l eng" is in TESSERACT_ARGS, so the argv keeps today's order.
            text = pytesseract.image_to_string(src, lang=None, config=shlex.join(TESSERACT_ARGS), timeout=timeout or 0)
        except pytesseract.TesseractError as exc:  # non-zero exit; message: its stderr
            raise ProcessError("tesseract", argv, exc.status, [exc.message] if exc.message else []) from exc
        except RuntimeError as exc:  # pytesseract's timeout is a bare RuntimeError (it killed tesseract)
            why = f"timed out after {timeout:g}s" if str(exc) == "Tesseract process timeout" else f"pytesseract: {exc}"
            raise ProcessError("tesseract", argv, None, [], why=why) from exc
        except (OSError, ValueError) as exc:  # the wrapper cannot start, no output file, not UTF-8
            raise ProcessError("tesseract", argv, None, [], why=f"{type(exc).__name__}: {exc}") from exc
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def read_variant(image: Image.Image, variant: str, logger: logging.Logger) -> str:
    box = content_box(image)
    if box is None:
        return ""
    return tesseract(VARIANTS[variant](image.crop(box)), logger)


def read_variants(image: Image.Image, logger: logging.Logger, names: list[str] | None = None) -> dict[str, str]:
    """Tesseract's reading of each variant, computed in parallel (one process per core)."""
    names = names or list(VARIANTS)
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1))) as pool:
        with signals_to_main():  # the pool's threads start here
            results = pool.map(lambda n: read_variant(image, n, logger), names)
        return dict(zip(names, results, strict=True))
