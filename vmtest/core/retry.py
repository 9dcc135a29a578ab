"""The one polling helper: retry on monotonic time, never busy-spinning."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry(
    fn: Callable[[bool], T | None],
    timeout: float,
    interval: float = 0.5,
    max_interval: float = 2.0,
) -> T | None:
    """Call ``fn(last_try)`` until it returns something other than ``None`` or False.

    ``last_try`` is True on the final attempt (so ``fn`` can log diagnostics).
    The pause between attempts grows from ``interval`` to ``max_interval``.
    Returns the first truthy result, or the result of the last try.
    """
    deadline = time.monotonic() + timeout
    pause = interval
    while True:
        last = time.monotonic() + pause >= deadline
        result = fn(last)
        if result or last:
            return result
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, max_interval)
