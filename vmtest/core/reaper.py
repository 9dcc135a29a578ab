"""``python -m vmtest.core.reaper ARGV...``: run ARGV; if our parent dies, kill all of it.

``PR_SET_PDEATHSIG`` only reaches a direct child, and is not inherited by
the processes that child forks (mmdebstrap forks apt, dpkg and its own
helpers). This wrapper leads its own process group, asks for SIGTERM when
its parent dies, and answers that (or SIGINT/SIGHUP) by SIGKILLing the whole
group, itself included. Otherwise it exits with the child's status.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> int:
    argv = sys.argv[1:]
    if not argv:
        print("usage: python -m vmtest.core.reaper ARGV...", file=sys.stderr)
        return 2

    def kill_group(*_: object) -> None:
        os.killpg(0, signal.SIGKILL)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, kill_group)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    expected_parent = os.environ.pop("VMTEST_REAPER_PARENT", "")
    if expected_parent and os.getppid() != int(expected_parent):
        kill_group()
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"vmtest: cannot run {argv[0]}: {exc}", file=sys.stderr)
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
