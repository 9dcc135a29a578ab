"""``python -I -S .../vmtest/core/supervisor.py PARENT TICKET [--stdin-pipe] -- ARGV...``: a long-running child that
may outlive its test run on purpose, and never its time limit.

With ``--vm-keep-on-failure`` every QEMU and vde_switch is started through this supervisor instead of
with ``PR_SET_PDEATHSIG`` (see :func:`vmtest.core.proc.spawn`). It leads the process group, runs ARGV
as its child (which dies with it: ``PR_SET_PDEATHSIG``) and, twice a second, looks at its TICKET file:

- no ticket, and PARENT (the pytest process) is gone: the run ended without keeping this machine;
  the group is killed (as without the supervisor, only up to half a second later);
- a ticket (JSON ``{"deadline": UNIX TIME, "remove": [PATHS], "rmdir": [DIRS]}``, written when a failed
  test's machines are kept): the child lives on after PARENT, until the deadline; then the group is
  killed, the ``remove`` paths (its state directory, its registry entry) are removed and the
  ``rmdir`` directories too if they are empty by then (the network's directory, shared by its machines).

SIGTERM, SIGINT and SIGHUP kill the group at once (``vmtest kill`` sends SIGKILL to the group). The
supervisor exits with its child's status when the child exits by itself (its paths are removed then
too, if it was kept). Reparented to init after PARENT dies, it is still reaped.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
POLL = 0.5
OWNER_FILE = ".vmtest-owner"  # vmtest.core.statedirs.OWNER_FILE (not imported: this starts as a small process)


def read_ticket(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("deadline"), (int, float)) else None


def remove(ticket: dict[str, object] | None) -> None:
    """Remove what a ticket lists (see the module docstring)."""
    if ticket:
        remove_paths(ticket.get("remove"), ticket.get("rmdir"))


def remove_paths(paths: object, empty_dirs: object = None) -> None:
    for item in paths if isinstance(paths, list) else []:
        path = Path(str(item))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for item in empty_dirs if isinstance(empty_dirs, list) else []:
        directory = Path(str(item))
        try:
            left = {p.name for p in directory.iterdir()}
        except OSError:  # gone
            continue
        if left <= {OWNER_FILE}:  # nothing but its owner's name (vmtest.core.statedirs): empty for us
            shutil.rmtree(directory, ignore_errors=True)


def end(ticket: dict[str, object] | None) -> None:
    remove(ticket)
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or "--" not in argv:
        print("usage: python -I -S supervisor.py PARENT TICKET [--stdin-pipe] -- ARGV...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parent, ticket = int(argv[0]), Path(argv[1])
    stdin_pipe = "--stdin-pipe" in argv[2:split]
    command = argv[split + 1 :]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: end(read_ticket(ticket)))
    signal.signal(signal.SIGUSR1, lambda *_: None)  # the parent died: the loop looks at once
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    if os.getppid() != parent and read_ticket(ticket) is None:  # gone before we got here, without keeping us
        end(None)
    read_end, write_end = os.pipe() if stdin_pipe else (-1, -1)  # a stdin that never ends (vde_switch)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != me:
            os._exit(1)
        if stdin_pipe:
            os.dup2(read_end, 0)
            os.close(read_end)
            os.close(write_end)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"vmtest: cannot run {command[0]}: {exc}", file=sys.stderr)
            os._exit(127)
    kept: dict[str, object] | None = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            remove(kept)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        # Once kept, kept until the deadline: a ticket removed meanwhile (its directory swept by an older
        # vmtest that does not know kept machines) does not end the machine early.
        kept = read_ticket(ticket) or kept
        if kept is not None and time.time() >= float(kept["deadline"]):  # type: ignore[arg-type]
            end(kept)
        if kept is None and os.getppid() != parent:
            end(None)
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
