"""A machine's state directory (vmtest.vm.paths): who makes it, what a launch finds in it, who removes it."""

import logging
import shutil
import socket
from pathlib import Path

import pytest

from vmtest.core import statedirs
from vmtest.core.errors import MachineError
from vmtest.net.switch import Switch
from vmtest.vm.paths import StateDir


def test_a_temporary_state_dir_is_made_at_the_first_launch_and_removed_once(tmp_path: Path) -> None:
    dirs = StateDir("m", None)
    with pytest.raises(MachineError, match="never started"):
        dirs.paths()
    paths = dirs.prepare()
    assert paths.xchg.is_dir() and paths.qemu_log.read_bytes() == b"" and dirs.temporary
    paths.qmp.write_text("stale socket")
    paths.qemu_log.write_text("last launch")
    again = dirs.prepare()  # the next launch: same directory, the last launch's socket and log gone
    assert again == paths and not paths.qmp.exists() and paths.qemu_log.read_bytes() == b""
    dirs.remove()
    dirs.remove()
    assert not paths.state_dir.exists() and dirs.path is None


@pytest.mark.parametrize("how", ["given", "kept", "let go"])
def test_a_given_kept_or_let_go_state_dir_stays(tmp_path: Path, how: str) -> None:
    dirs = StateDir("m", tmp_path / "given" if how == "given" else None, keep=how == "kept")
    paths = dirs.prepare()
    if how == "let go":
        dirs.let_go()  # --vm-keep-on-failure: no longer this run's to remove
    dirs.remove()
    assert paths.state_dir.is_dir() and not dirs.temporary and paths.qemu_output() == ""
    if how != "given":
        shutil.rmtree(paths.state_dir)


def test_sockets_of_a_state_dir_too_long_for_them_live_in_a_short_directory(tmp_path: Path) -> None:
    """A given state directory below a deep path (xdist's tmp_path, --vm-keep-state in a deep checkout):
    a socket path below it would not fit in a socket address (QEMU and Python fail with "AF_UNIX path too
    long"), so the sockets go to one short directory that every process derives from the state directory."""
    deep = tmp_path / ("d" * 60) / "state" / "keeper"
    dirs = StateDir("keeper", deep)
    paths = dirs.prepare()
    assert paths.separate_sockets and paths.state_dir == deep
    for sock in (paths.qmp, paths.shell, paths.serial, paths.attach, paths.agent, paths.tpm_socket):
        assert sock.parent == paths.sockets and len(bytes(sock)) <= statedirs.SOCKET_PATH_MAX
    assert paths.qemu_log.parent == deep and paths.xchg.parent == deep  # (only the sockets move)
    assert paths.sockets.is_dir() and statedirs.owner_of(paths.sockets) == statedirs.Owner.me()
    assert StateDir("keeper", deep).paths().attach == paths.attach  # `vmtest attach` in another process
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(paths.qmp))  # a real socket fits there
    finally:
        listener.close()
    dirs.remove()  # a given state directory stays; its socket directory goes
    assert deep.is_dir() and not paths.sockets.exists()


def test_sockets_stay_in_a_short_state_dir(tmp_path: Path) -> None:
    paths = StateDir("m", tmp_path / "s").prepare()
    assert not paths.separate_sockets and paths.qmp.parent == tmp_path / "s"


def test_a_switch_below_a_directory_too_long_for_its_sockets_starts(tmp_path: Path) -> None:
    """vde_switch truncates a control socket path that does not fit (``switch/ctl`` became ``switch/c``) and
    QEMU then hung connecting to it: a switch below a deep directory keeps its sockets in a short one."""
    logger = logging.getLogger("test")
    deep = tmp_path / ("d" * 70) / "vlan1"
    switch = Switch(1, deep, logger)
    assert switch.sockets != deep and len(bytes(switch.socket / "000.0000")) <= statedirs.SOCKET_PATH_MAX
    switch.start()
    try:
        assert (switch.socket / "ctl").is_socket() and switch.mgmt.is_socket()
        assert (deep / "switch.log").exists()  # (the log stays in the directory)
    finally:
        switch.stop()
    assert not switch.sockets.exists()
