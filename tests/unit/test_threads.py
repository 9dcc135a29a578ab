"""SIGINT reaches the main thread even while vmtest's own threads run (vmtest.core.threads)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

PROGRAM = textwrap.dedent(
    """
    import signal, sys, threading, time
    from vmtest.core.threads import signals_to_main

    stop = threading.Event()
    with signals_to_main():
        helpers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(8)]
        for t in helpers:
            t.start()
    # Every helper blocks SIGINT: the kernel can only deliver it to this (main) thread.
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    sys.exit(1)
    """
)


def _blocked_signals_of_threads(pid: int) -> dict[str, int]:
    masks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = open(f"/proc/{pid}/task/{tid}/status").read()
        blocked = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
        masks[tid] = int(blocked.split()[1], 16)
    return masks


def test_helper_threads_block_sigint_and_sigterm_and_the_main_thread_gets_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        masks = _blocked_signals_of_threads(proc.pid)
        bits = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
        main = masks.pop(str(proc.pid))
        assert main & bits == 0
        assert len(masks) == 8 and all(m & bits == bits for m in masks.values()), masks
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
        assert proc.stdout.readline().strip() == "interrupted"
    finally:
        proc.kill()
        proc.wait()


def test_children_of_such_threads_get_sigint_and_sigterm_back() -> None:
    from vmtest.core.threads import signals_to_main, unblock_in_child

    with signals_to_main():  # as a helper thread forking a child
        child = subprocess.Popen(["sleep", "30"], preexec_fn=unblock_in_child)
    try:
        status = open(f"/proc/{child.pid}/status").read()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        assert blocked & (1 << (signal.SIGTERM - 1)) == 0
        child.terminate()
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()
