"""A vmtest error's failure report starts at the user's line: vmtest's frames are left out and the tool
output appears once; other exceptions keep every frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vmtest import MachineConfig
from vmtest.core.proc import ProcessError
from vmtest.image.rootfs import _explain_mmdebstrap

USER_TEST = """
import logging
from vmtest.core.proc import run


def test_user_line():
    run(["sh", "tool.sh"], what="mmdebstrap", logger=logging.getLogger("user"))


def test_internal_bug():
    from vmtest.core import keptdisks
    keptdisks.backing_chain(None)
"""


def test_the_report_starts_at_the_users_line(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    (tmp_path / "tool.sh").write_text("echo 'E: Unable to locate package ngnix-light'; exit 100\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "test_user.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    out = done.stdout
    first, second = out.split("_ test_internal_bug _")
    assert "def test_user_line" in first
    assert "ProcessError: mmdebstrap failed (exit status 100): sh tool.sh" in first
    assert first.count("ngnix-light") == 1  # the tool output, once
    assert "vmtest/core/proc.py" not in first  # vmtest's own frames are not in the report
    assert "vmtest/core/keptdisks.py" in second  # a bug in vmtest keeps vmtest's frames


def test_a_failed_mmdebstrap_error_quotes_the_output_once_and_not_the_command_line() -> None:
    exc = ProcessError("mmdebstrap", ["mmdebstrap", "--include=" + "x" * 2000], 2, ["E: something broke"])
    text = str(_explain_mmdebstrap(exc, MachineConfig()))
    assert text.count("E: something broke") == 1 and "xxxx" not in text
    assert text.startswith("image build failed while running mmdebstrap: mmdebstrap failed (exit status 2)")
