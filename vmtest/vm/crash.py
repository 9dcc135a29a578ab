"""A guest kernel that crashes while a command waits: the wait ends at once, quoting the crash.

The kernel prints ``Kernel panic - not syncing: ...`` on its consoles (the
serial console at least: a panic is printed at KERN_EMERG, above any
console log level) and then, with ``panic=-1``, reboots at once. Without a
watch a command on that machine would wait for its whole timeout, and its
error would show the next boot's first lines. :func:`watcher` looks at the
serial console's new lines while a command waits (the backdoor polls it
about twice a second) and names the panic.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

PANIC = re.compile(r"Kernel panic - not syncing: .*")
DRAIN = 2.0  # how long a final check waits for the console's reader to reach the end
CONTEXT = 12  # console lines before the panic line that go into the error (the oops, the call trace)


def watcher(console: Any) -> Callable[..., str | None]:
    """A check for a kernel panic printed on ``console`` after this call: None, or a message quoting
    the panic line and the lines before it. ``check(final=True)``, when the guest's channel closed: first
    wait (up to :data:`DRAIN` seconds) until the console has been read to its end, as QEMU may exit at
    the panic's reboot before the console's reader got the panic. (A console without a ``lines``
    history is never checked.)"""
    lines: list[str] | None = getattr(console, "lines", None)
    if not isinstance(lines, list):
        return lambda final=False: None
    seen = first = len(lines)

    def check(final: bool = False) -> str | None:
        nonlocal seen
        deadline = time.monotonic() + DRAIN
        while final and not getattr(console, "closed", True) and time.monotonic() < deadline:
            time.sleep(0.05)
        end = len(lines)
        for i in range(seen, end):
            match = PANIC.search(lines[i])
            if match:
                context = "\n".join(lines[max(first, i - CONTEXT) : i + 1])
                panic = match.group(0).strip()
                return f"the guest kernel panicked: {panic!r}\n--- console before the panic ---\n{context}"
        seen = end
        return None

    return check
