"""Start external processes so that they are always reaped.

Every external program vmtest runs (QEMU, mmdebstrap, mkfs, qemu-img, ...)
goes through :func:`run` (wait for it) or :func:`spawn` (keep it running).
Both log the argv and start the child in its own session. :func:`spawn`
asks the kernel to SIGKILL the child when its parent dies
(``PR_SET_PDEATHSIG``); :func:`run` goes through :mod:`vmtest.core.reaper`, which
kills the child's whole process group (grandchildren included) when we die,
so a killed pytest leaves nothing behind. :func:`run` also kills the group on
timeout or Ctrl-C.

The one exception is tesseract, which pytesseract starts: it runs through
``vmtest/machine/tesseract-wrapper``, which gives it ``PR_SET_PDEATHSIG``
(see :func:`vmtest.machine.ocr.tesseract`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from vmtest.core import supervisor
from vmtest.core.errors import VmtestError
from vmtest.core.log import log
from vmtest.core.threads import signals_to_main, unblock_in_child

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        unblock_in_child()  # forked by a vmtest thread that leaves SIGINT/SIGTERM to the main thread
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # parent died before prctl took effect
            os._exit(1)

    return preexec


class ProcessError(VmtestError):
    """An external program failed; carries its argv, status and output tail."""

    def __init__(self, what: str, argv: Sequence[str], status: int | None, tail: Sequence[str], why: str = "") -> None:
        self.what = what
        self.argv = list(argv)
        self.status = status
        self.tail = list(tail)
        reason = why or f"exit status {status}"
        text = f"{what} failed ({reason}): {shlex.join(self.argv)}"
        if self.tail:
            text += "\n--- last output lines ---\n" + "\n".join(self.tail)
        super().__init__(text)


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    status: int
    output: str
    elapsed: float


@functools.cache
def version_line(program: str) -> str:
    """The first line ``program --version`` prints (once per process and program), "unknown" when it prints
    nothing, "unknown (why)" when it cannot run: what keys use to tell one build of a tool from another."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.stdout.splitlines()[0].strip() if out.stdout.strip() else "unknown"


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` (it leads its own session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - only on a wedged kernel
        pass


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    logger: logging.Logger,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    line_level: int = logging.DEBUG,
    line_filter: Callable[[str], bool] | None = None,
    tail_lines: int = 30,
) -> Completed:
    """Run a program to completion, streaming its merged output to ``logger``.

    Lines are logged at ``line_level`` (those for which ``line_filter`` is
    true at INFO, to show progress). On a non-zero exit (with ``check``), a
    timeout or an interrupt the whole process group is killed and a
    :class:`ProcessError` carrying the last output lines is raised.
    """
    args = [os.fspath(a) for a in argv]
    log(logger, "$ " + shlex.join(args), level=logging.DEBUG)
    full_env = {**os.environ, **(env or {}), "VMTEST_REAPER_PARENT": str(os.getpid())}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmtest.core.reaper", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=tail_lines)
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        kill_group(proc)

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    if timer:
        timer.daemon = True
        with signals_to_main():
            timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            tail.append(line)
            level = logging.INFO if line_filter and line_filter(line) else line_level
            log(logger, f"{args[0].rsplit('/', 1)[-1]}: {line}", level=level)
        status = proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if timer:
            timer.cancel()
        # The direct child is gone; make sure no grandchild of its group survives.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elapsed = time.monotonic() - start
    if timed_out.is_set():
        raise ProcessError(what, args, None, list(tail), why=f"timed out after {timeout:.0f}s")
    if check and status != 0:
        raise ProcessError(what, args, status, list(tail))
    return Completed(args, status, "\n".join(lines), elapsed)


class _Spawner:
    """The one thread that starts long-running children.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a child exits, not the process: a QEMU
    started from a short-lived worker thread would be killed with it. So every long-running child is
    forked here, by a daemon thread that lives as long as the process (and, at its end, takes the
    children with it). Process-wide by nature, like the signal it serves; created on first use.
    """

    _instance: _Spawner | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]]
        self._requests = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="vmtest-spawner", daemon=True)
        with signals_to_main():
            self._thread.start()

    @classmethod
    def get(cls) -> _Spawner:
        with cls._instance_lock:
            if cls._instance is None or not cls._instance._thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def _serve(self) -> None:
        while True:
            start, future = self._requests.get()
            try:
                future.set_result(start())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def run(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        if threading.current_thread() is self._thread:
            return start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((start, future))
        return future.result()


_supervised = False
# Run as a script, isolated and without site (-I -S): it imports the standard library only, and starting through
# the vmtest package would import the whole public API first (0.23 s on a quiet host, over 0.5 s on a loaded one).
SUPERVISOR = str(Path(supervisor.__file__).resolve())
# How a supervisor shows in /proc/<pid>/cmdline wherever this vmtest is installed (the registry of kept machines is in
# the cache, which every checkout and venv shares), and as vmtest started it before (-m vmtest.core.supervisor).
SUPERVISOR_MARKS = (b"vmtest/core/supervisor.py", b"vmtest.core.supervisor")


def supervise_children(on: bool) -> None:
    """From now on, start long-running children through :mod:`vmtest.core.supervisor` (``on``) so that
    they can be kept after this process ends (``--vm-keep-on-failure``), or directly (the default)."""
    global _supervised
    _supervised = on


def keep_ticket(stdout: Path) -> Path:
    """The ticket file of the supervised child whose output goes to ``stdout`` (see :mod:`vmtest.core.supervisor`)."""
    return stdout.with_name(stdout.name + ".keep")


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    logger: logging.Logger,
    stdout: Path,
    env: Mapping[str, str] | None = None,
    stdin_pipe: bool = False,
    stdin_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running program (QEMU, vde_switch) with stdout+stderr to a file.

    The child gets ``PR_SET_PDEATHSIG`` (SIGKILL) and its own session; it is forked by vmtest's
    spawner thread (:class:`_Spawner`), so any thread may call this and the child lives until its
    owner kills it (:func:`kill_group`) or the process ends.
    """
    args = [os.fspath(a) for a in argv]
    log(logger, "$ " + shlex.join(args), level=logging.DEBUG)
    full_env = None if env is None else {**os.environ, **env}

    if _supervised:  # see supervise_children(): the supervisor leads the group and bounds its life
        keep_ticket(stdout).unlink(missing_ok=True)
        pipe = ["--stdin-pipe"] if stdin_pipe else []
        supervisor = [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()), str(keep_ticket(stdout))]
        args = [*supervisor, *pipe, "--", *args]
        stdin_pipe = False

    def start() -> subprocess.Popen[bytes]:
        with open(stdout, "ab") as out, open(stdin_file or os.devnull, "rb") as source:
            return subprocess.Popen(
                args,
                stdin=subprocess.PIPE if stdin_pipe else source,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                preexec_fn=unblock_in_child if _supervised else _die_with_parent(os.getpid()),
            )

    return _Spawner.get().run(start)
