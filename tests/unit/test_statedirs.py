"""State directories name their owner; the sweep removes those whose owner is gone, never a live one's."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vmtest.core import statedirs
from vmtest.core.cache import Cache

LOG = logging.getLogger("vmtest.test.statedirs")


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_process_start_is_stable_and_none_for_a_dead_process() -> None:
    me = statedirs.process_start(os.getpid())
    assert me is not None and me == statedirs.process_start(os.getpid())
    assert statedirs.process_start(dead_pid()) is None


def test_make_names_this_process_as_owner(tmp_path: Path) -> None:
    d = statedirs.make("vmtest-x-", tmp_path)
    assert d.parent == tmp_path and d.name.startswith("vmtest-x-")
    owner = statedirs.owner_of(d)
    assert owner == statedirs.Owner.me() and owner.alive()


def write_owner(d: Path, pid: int, start: int | None) -> Path:
    d.mkdir()
    (d / statedirs.OWNER_FILE).write_text(json.dumps({"pid": pid, "start": start}))
    (d / "disk.qcow2").write_bytes(b"x" * 100_000)
    return d


def test_a_temporary_directory_too_long_for_its_sockets_is_a_host_error(tmp_path: Path) -> None:
    """A switch's sockets below a long TMPDIR would be truncated (vde_switch then fails with "Could not bind
    to socket ... Address already in use"): the directory is refused at once, saying what to do."""
    from vmtest.core.errors import HostError
    from vmtest.net.switch import socket_room

    room = socket_room(1)
    deep = tmp_path / ("d" * (statedirs.SOCKET_PATH_MAX - len(str(tmp_path)) - room))
    deep.mkdir()
    with pytest.raises(HostError) as error:
        statedirs.make("vmtest-net-", deep, socket_room=room)
    assert f"the temporary directory {deep} is too long" in str(error.value)
    assert "set TMPDIR to a shorter directory" in str(error.value)
    assert list(deep.iterdir()) == []  # nothing left behind
    short = Path(tempfile.mkdtemp(prefix="vt-"))
    try:
        assert statedirs.make("vmtest-net-", short, socket_room=room).is_dir()  # a short one is fine
    finally:
        shutil.rmtree(short)
    assert statedirs.make("vmtest-ocr-", deep).is_dir()  # and no sockets, no limit


def test_sweep_removes_dead_owners_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = statedirs.make("vmtest-net-", tmp_path)
    dead = write_owner(tmp_path / "vmtest-net-dead", dead_pid(), 12345)
    # a live pid with another start time: the pid was reused, the owner is gone
    reused = write_owner(tmp_path / "vmtest-a-reused", os.getpid(), (statedirs.process_start(os.getpid()) or 0) + 1)
    unowned = tmp_path / "vmtest-old"  # an older vmtest's or run-vm's: never touched
    unowned.mkdir()
    other = write_owner(tmp_path / "other-dead", dead_pid(), 1)  # not ours by name
    caplog.set_level(logging.DEBUG)
    count, freed = statedirs.sweep(LOG, tmp_path)
    assert (count, live.exists(), dead.exists(), reused.exists()) == (2, True, False, False)
    assert unowned.exists() and other.exists()
    assert freed >= 200_000
    assert "removed 2 state directories left by killed runs" in caplog.text


def test_sweep_leftovers_keeps_builds_in_progress(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    (cache.root / "tmp" / "images-aaa.x1").mkdir(parents=True)
    (cache.root / "tmp" / "images-aaa.x1" / "root").write_bytes(b"y" * 50_000)
    busy = cache.root / "tmp" / "images-bbb.x2"
    busy.mkdir()
    (cache.root / "locks").mkdir()
    with open(cache.root / "locks" / "images-bbb.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        count, freed = statedirs.sweep_leftovers(cache, LOG)
    assert not (cache.root / "tmp" / "images-aaa.x1").exists() and busy.exists()
    assert count >= 1 and freed >= 50_000


def test_a_zombie_owner_is_gone() -> None:
    """A killed run's process may stay a zombie for good (no init reaps it in a container)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while "Z" not in Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1][:3] and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert statedirs.process_start(proc.pid) is None
    finally:
        proc.wait()


def test_a_directory_handed_over_to_a_kept_process_stays_while_it_lives(tmp_path: Path) -> None:
    kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = write_owner(tmp_path / "vmtest-net-kept", dead_pid(), 1)  # the run that made it is gone
        statedirs.hand_over(d, [kept.pid])  # --vm-keep-on-failure: its machine's supervisor lives on
        assert statedirs.sweep(LOG, tmp_path) == (0, 0) and d.exists()
    finally:
        kept.kill()
        kept.wait()
    assert statedirs.sweep(LOG, tmp_path)[0] == 1 and not d.exists()


def test_a_test_network_without_nodes_gets_its_directory() -> None:
    """vm_factory's network starts empty (machines join later): its directory is made, with room for a switch."""
    from vmtest.net.driver import Driver

    driver = Driver({}, store=None)  # type: ignore[arg-type]
    try:
        assert driver.state_root.is_dir() and statedirs.owner_of(driver.state_root) == statedirs.Owner.me()
    finally:
        driver.release()
    assert not driver.state_root.exists()
