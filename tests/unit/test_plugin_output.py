"""A test's output directory holds only what its latest run left (runs pytest, no QEMU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vmtest.core.errors import CommandFailed, MachineError
from vmtest.plugin.report import clear, quoted_by, safe_name

TESTS = """
def test_passes_now():
    pass

def test_fails_now():
    assert False
"""


def test_a_test_run_again_starts_from_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "test_again.py").write_text(TESTS)
    out = tmp_path / "vmtest-output"
    for name in ("test_passes_now", "test_fails_now"):
        stale = out / safe_name(f"test_again.py::{name}")
        stale.mkdir(parents=True)
        (stale / "web-console.log").write_text("from an earlier failed run\n")
    other = out / "state" / "abc"  # --vm-keep-state's directory, and other tests' directories, stay
    other.mkdir(parents=True)
    unrelated = out / safe_name("test_other.py::test_x")
    unrelated.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_again.py"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert not (out / safe_name("test_again.py::test_passes_now")).exists()
    assert not (out / safe_name("test_again.py::test_fails_now")).exists()  # no VM: nothing to leave
    assert other.is_dir() and unrelated.is_dir()


def test_clear_removes_only_that_test(tmp_path: Path) -> None:
    mine = tmp_path / safe_name("a.py::test_b[x/y]")
    (mine / "sub").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    clear(tmp_path, "a.py::test_b[x/y]")
    clear(tmp_path, "never.py::ran")
    assert not mine.exists() and (tmp_path / "keep").is_dir()


def test_the_failing_machine_is_quoted_once() -> None:
    assert quoted_by(CommandFailed("web", "false", 1, "", 0.1, console_tail=["line"])) == "web"
    assert quoted_by(MachineError("web", "x", "y")) is None  # no lines in the error: the report shows them
    assert quoted_by(AssertionError("web")) is None
    assert quoted_by(None) is None
