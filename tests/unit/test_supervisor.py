"""vmtest.core.supervisor with real processes (``sleep`` stands in for QEMU): a child dies with the run
unless it has a ticket, and never outlives its ticket's deadline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vmtest.core import supervisor
from vmtest.core.proc import keep_ticket
from vmtest.vm import keep

# A short-lived "pytest run": spawns `sleep` supervised, prints the supervisor's pid, optionally writes a
# ticket, and exits.
RUN = """
import logging, sys, time
from pathlib import Path
from vmtest.core import proc
from vmtest.vm import keep
proc.supervise_children(True)
out = Path(sys.argv[1])
p = proc.spawn(["sleep", "600"], logger=logging.getLogger("t"), stdout=out)
print(p.pid, flush=True)
time.sleep(float(sys.argv[4]))
if sys.argv[2] != "-":
    keep.write_ticket(out, time.time() + float(sys.argv[2]), [sys.argv[3]])
"""


def _run(tmp_path: Path, keep_for: str, remove: Path | None = None, pause: float = 0.5) -> int:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "child.log"), keep_for, str(remove or ""), str(pause)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout.split()[0])


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while keep.is_supervisor(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_without_a_ticket_the_child_dies_with_the_run(tmp_path: Path) -> None:
    pid = _run(tmp_path, "-")
    assert _gone(pid, 5)


def test_a_ticket_keeps_the_child_until_its_deadline_then_removes_its_paths(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # (6 s: the ticket's deadline runs from its writing, before the run's interpreter exits; with 3 s a loaded
    # CI host once took longer than that to get here, and the child had rightly ended)
    pid = _run(tmp_path, "6", state)
    try:
        time.sleep(0.5)
        assert keep.is_supervisor(pid), "the kept child died with the run"
        assert _children_of(pid), "the supervisor has no child"
        assert _gone(pid, 15), "the kept child outlived its deadline"
        assert not state.exists()
    finally:
        if keep.is_supervisor(pid):
            os.killpg(pid, 9)


def test_a_run_that_ends_before_its_supervisor_is_up_still_keeps_a_ticketed_child(tmp_path: Path) -> None:
    # The run writes the ticket at once and exits while the supervisor's interpreter is still starting (a loaded CI
    # host: the supervisor found its parent gone and ended the child without looking at the ticket).
    state = tmp_path / "state"
    state.mkdir()
    pid = _run(tmp_path, "30", state, pause=0)
    try:
        time.sleep(1)
        assert keep.is_supervisor(pid), "the ticketed child died because its run ended first"
        assert _children_of(pid), "the supervisor has no child"
    finally:
        if keep.is_supervisor(pid):
            os.killpg(pid, 9)


def test_a_supervisor_of_another_vmtest_install_is_recognised(tmp_path: Path) -> None:
    # The registry of kept machines is in the shared cache: `vmtest ps` of one checkout must not take the live
    # machines another checkout (or venv) kept for ended ones and remove their entries.
    other = tmp_path / "elsewhere" / "vmtest" / "core" / "supervisor.py"
    other.parent.mkdir(parents=True)
    shutil.copy(supervisor.__file__, other)
    ticket = tmp_path / "child.log.keep"
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", str(other), str(os.getpid()), str(ticket), "--", "sleep", "60"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _children_of(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children_of(child.pid), "the copied supervisor did not start its child"
        assert keep.is_supervisor(child.pid)
    finally:
        os.killpg(child.pid, 9)
        child.wait()


def test_registry_lists_finds_and_kills(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    pid = _run(tmp_path, "120", state)
    root = tmp_path / "kept"
    try:
        entry = keep.Kept("web-1", "web", "t.py::x", pid, "/none", str(state), time.time() + 120, remove=[str(state)])
        keep.register(root, entry)
        keep.register(root, keep.Kept("old-2", "old", "t.py::y", 2**22 + 7, "/none", "/none", 0.0))  # ended
        assert [k.id for k in keep.listing(root)] == ["web-1"]
        assert keep.find(root, "web") == entry
        keep.kill(root, entry)
        assert not keep.is_supervisor(pid)
        assert keep.listing(root) == [] and not state.exists()
    finally:
        if keep.is_supervisor(pid):
            os.killpg(pid, 9)


def test_ticket_is_json_with_deadline(tmp_path: Path) -> None:
    keep.write_ticket(tmp_path / "qemu.log", 123.0, ["/x"])
    got = json.loads(keep_ticket(tmp_path / "qemu.log").read_text())
    assert got == {"deadline": 123.0, "remove": ["/x"], "rmdir": []}


def test_rmdir_removes_a_directory_holding_only_its_owner_file(tmp_path: Path) -> None:
    from vmtest.core import statedirs
    from vmtest.core.supervisor import remove_paths

    shared, busy = statedirs.make("vmtest-net-", tmp_path), statedirs.make("vmtest-net-", tmp_path)
    (busy / "box").mkdir()
    remove_paths([], [str(shared), str(busy)])
    assert not shared.exists() and (busy / "box").is_dir()
