"""A machine's state directory (vmtest.vm.paths): who makes it, what a launch finds in it, who removes it."""

import shutil
from pathlib import Path

import pytest

from vmtest.core.errors import MachineError
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
        dirs.owned = False  # --vm-keep-on-failure: no longer this run's to remove
    dirs.remove()
    assert paths.state_dir.is_dir() and not dirs.temporary and paths.qemu_output() == ""
    if how != "given":
        shutil.rmtree(paths.state_dir)
