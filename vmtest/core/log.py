"""Nested, timed log sections in the style of the NixOS test driver.

Loggers are ordinary stdlib loggers named ``vmtest.<part>`` (``vmtest.<machine>``
for a machine), so pytest's live log shows them. ``nested`` indents what is
logged inside it and reports how long the section took, also when it fails;
each section is also a span of the test's timeline (:mod:`vmtest.core.timeline`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vmtest.core import progress, timeline

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("vmtest_log_depth", default=0)


def get_logger(name: str = "") -> logging.Logger:
    """The logger ``vmtest`` or ``vmtest.<name>``."""
    return logging.getLogger(f"vmtest.{name}" if name else "vmtest")


def indent() -> str:
    return "  " * _depth.get()


def depth() -> int:
    """How deep the current section is nested (0: called straight from a test)."""
    return _depth.get()


def log(logger: logging.Logger, msg: str, *args: object, level: int = logging.INFO) -> None:
    """Log ``msg`` at the current nesting depth."""
    logger.log(level, indent() + msg, *args)


@contextmanager
def nested(logger: logging.Logger, msg: str, level: int = logging.INFO) -> Iterator[None]:
    """A timed log section: logs ``msg``, indents what happens inside, then the time taken."""
    log(logger, msg, level=level)
    progress.step(msg)  # a step of the progress activity this runs in, if any
    # DEBUG sections (a cached kernel looked up) are details, not steps of the test's timeline
    spans = timeline.begin(logger.name, msg, _depth.get()) if level > logging.DEBUG else []
    token = _depth.set(_depth.get() + 1)
    start = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        _depth.reset(token)
        timeline.finish(spans, ok)
        took = time.monotonic() - start
        outcome = "done" if ok else "FAILED"
        log(logger, f"({outcome}: {msg}, in {took:.2f} seconds)", level=level)


@contextmanager
def span(logger: logging.Logger, msg: str) -> Iterator[None]:
    """A span of the test's timeline only (nothing is logged): for steps that log on their own."""
    spans = timeline.begin(logger.name, msg, _depth.get())
    ok = False
    try:
        yield
        ok = True
    finally:
        timeline.finish(spans, ok)


def size_text(n: float) -> str:
    """A byte count for people: ``512 B``, ``3.2 MiB``, ``20.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
