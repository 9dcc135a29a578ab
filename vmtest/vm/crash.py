"""A guest that cannot go on while a command or a boot waits: the wait ends at once, quoting the console.

The kernel prints ``Kernel panic - not syncing: ...`` on its consoles (the
serial console at least: a panic is printed at KERN_EMERG, above any
console log level) and then, with ``panic=-1``, reboots at once. Without a
watch a command on that machine would wait for its whole timeout, and its
error would show the next boot's first lines. Likewise a boot loader that
refuses the kernel (GRUB under Secure Boot: ``error: bad shim signature.``;
shim refusing GRUB: ``Verification failed: (0x1A) Security Violation``)
leaves nothing more to wait for: the wait for the backdoor shell would last
its whole timeout. :func:`watcher` looks at the serial console's new lines
while a command or the wait for the shell waits (polled about once or twice
a second) and names what stopped the guest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

PANIC = re.compile(r"Kernel panic - not syncing: .*")
# What stops a guest for good, as printed on its serial console, and how the error names it.
STOPS = (
    (PANIC, "the guest kernel panicked"),
    (re.compile(r"error: bad shim signature\.?"), "the boot loader refused the kernel"),
    (re.compile(r"Verification failed: \(0x1A\) Security Violation"), "shim refused the boot loader"),
)
DRAIN = 2.0  # how long a final check waits for the console's reader to reach the end
CONTEXT = 12  # console lines before the panic line that go into the error (the oops, the call trace)


def watcher(console: Any) -> Callable[..., str | None]:
    """A check for a kernel panic (or another of :data:`STOPS`) printed on ``console`` after this call:
    None, or a message quoting that line and the lines before it. ``check(final=True)``, when the guest's
    channel closed: first wait (up to :data:`DRAIN` seconds) until the console has been read to its end,
    as QEMU may exit at the panic's reboot before the console's reader got the panic. (A console without
    a ``lines`` history is never checked.)"""
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
            for pattern, what in STOPS:
                match = pattern.search(lines[i])
                if match:
                    context = "\n".join(lines[max(first, i - CONTEXT) : i + 1])
                    return f"{what}: {match.group(0).strip()!r}\n--- console before it ---\n{context}"
        seen = end
        return None

    return check
