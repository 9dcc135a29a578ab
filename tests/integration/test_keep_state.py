"""--vm-keep-state: a file written by the guest survives into the next pytest run."""

from __future__ import annotations

import subprocess
import sys

TEST = """
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"keeper": MachineConfig()})
def test_keep(keeper):
    previous = keeper.execute("cat /root/runs")[1]
    keeper.succeed("echo run >> /root/runs && sync")
    print("PREVIOUS=" + repr(previous), flush=True)
    keeper.shutdown()
"""


def test_keep_state_survives_into_the_next_run(tmp_path):
    (tmp_path / "test_keep.py").write_text(TEST)
    out = tmp_path / "o"

    def run(*extra: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-s",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "log_cli=false",
                f"--vm-output-dir={out}",
                *extra,
                "test_keep.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        return proc.stdout

    assert "PREVIOUS=''" in run("--vm-keep-state")
    assert "PREVIOUS='run\\n'" in run("--vm-keep-state")
    # Without the option every run starts from the image again.
    assert "PREVIOUS=''" in run()
