"""Ctrl-C belongs to the main thread.

Python runs signal handlers in the main thread only, but the kernel delivers a
process-directed signal to any thread that does not block it. When that is one
of vmtest's helper threads (a console reader, the spawner, a watchdog), the
handler's flag is set but the main thread sleeping in a test (``time.sleep``,
a blocking read) is never woken, and pytest ignores Ctrl-C until the sleep
ends. So every thread vmtest starts blocks SIGINT and SIGTERM: start it inside
:func:`signals_to_main` (a new thread inherits its creator's mask). The
children such threads fork inherit the mask too; :func:`unblock_in_child`, in
their ``preexec_fn``, gives them the default back.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

MAIN_THREAD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def signals_to_main() -> Iterator[None]:
    """Threads started inside this block leave SIGINT and SIGTERM to the main thread.

    (A signal arriving meanwhile stays pending and is delivered when the block ends.)"""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_in_child() -> None:
    """In a forked child (``preexec_fn``): SIGINT and SIGTERM reach the program again."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MAIN_THREAD_SIGNALS)
