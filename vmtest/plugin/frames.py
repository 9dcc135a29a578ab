"""vmtest's own frames stay out of a test's failure report when the failure is a vmtest error.

A ``VmtestError`` already says what failed, on which machine, after how
long, with the console's last lines: the frames of vmtest's internals that
raised it only push the user's own line off the screen. For such errors the
report keeps the test's frames (and any other library's) and drops those
under the vmtest package; any other exception (a bug in vmtest, say) keeps
every frame.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pytest
from _pytest._code.code import Traceback

import vmtest
from vmtest.core.errors import VmtestError

PACKAGE = Path(vmtest.__file__).resolve().parent


def is_vmtest_frame(path: object) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def hide_vmtest_frames(excinfo: pytest.ExceptionInfo[BaseException] | None) -> None:
    """Unlink vmtest's frames from the traceback of ``excinfo`` if it holds a VmtestError. (The raw
    ``tb_next`` chain is relinked, not just pytest's view of it: pytest cuts tracebacks at the test function
    by rebuilding them from the raw chain.) Keeps everything when the first or every frame is vmtest's."""
    if excinfo is None or not isinstance(excinfo.value, VmtestError):
        return
    chain: list[TracebackType] = []
    tb: TracebackType | None = excinfo.tb
    while tb is not None:
        chain.append(tb)
        tb = tb.tb_next
    kept = [t for t in chain if not is_vmtest_frame(t.tb_frame.f_code.co_filename)]
    if not kept or kept[0] is not chain[0] or len(kept) == len(chain):
        return
    for this, after in zip(kept, [*kept[1:], None], strict=True):
        this.tb_next = after
    excinfo.traceback = Traceback(excinfo.tb)
