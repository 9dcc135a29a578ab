"""Progress on the terminal in a user's project (no live logging): an image build with its steps and each
boot, as plain lines in a pipe, as redrawn lines on a terminal, and nothing extra with ``-q``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pexpect

from tests.integration.conftest import PYTEST

TEST = """
import pytest
from vmtest import MachineConfig

CONFIG = MachineConfig(files={{"/etc/progress-nonce": "{nonce}"}})


@pytest.mark.vmtest(nodes={{"server": CONFIG}}, snapshots=False)
def test_boots(server):
    assert server.succeed("cat /etc/progress-nonce") == "{nonce}"
"""


def _project(tmp_path: Path, nonce: str) -> dict[str, str]:
    (tmp_path / "test_user.py").write_text(TEST.format(nonce=nonce))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["VMTEST_OUTPUT_DIR"] = str(tmp_path / "out")
    return env


def _pytest(run_pytest, tmp_path: Path, env: dict[str, str], *args: str) -> str:
    proc = run_pytest(*args, "test_user.py", cwd=tmp_path, env=env, timeout=1200)
    assert proc.returncode == 0, proc.output
    return proc.stdout


def test_plain_progress_lines_in_a_pipe_and_none_with_q(tmp_path, nonce, run_pytest):
    env = _project(tmp_path, nonce)
    out = _pytest(run_pytest, tmp_path, env, "-v")
    print(out)
    lines = out.splitlines()
    # The image build and its steps, then the boot, each on a line of its own, before the result.
    build = next(i for i, line in enumerate(lines) if re.match(r"vmtest: image \w+: .*: building image \w+$", line))
    assert any(re.match(r"vmtest: image .* - mmdebstrap ", line) for line in lines[build:])
    assert any(re.match(r"vmtest: image .*: building image \w+: done in \d+\.\ds$", line) for line in lines[build:])
    boot = lines.index("vmtest: server: booting")
    assert boot > build
    done = next(i for i, line in enumerate(lines) if re.fullmatch(r"vmtest: server: booting: done in \d+\.\ds", line))
    assert done > boot
    assert any(line.startswith("test_user.py::test_boots PASSED") for line in lines[done:])
    # -q: nothing extra (the image is cached now; the machine still boots).
    quiet = _pytest(run_pytest, tmp_path, env, "-q")
    assert "vmtest: server" not in quiet and "vmtest: image " not in quiet and "1 passed" in quiet


def test_progress_lines_redrawn_on_a_terminal(tmp_path, nonce):
    env = _project(tmp_path, nonce)
    env["TERM"] = "xterm"
    child = pexpect.spawn(
        PYTEST[0],
        [*PYTEST[1:], "-v", "test_user.py"],
        cwd=str(tmp_path),
        env=env,
        dimensions=(40, 160),
        timeout=1200,
    )
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before.decode(errors="replace")
    print(raw)
    assert child.exitstatus == 0, raw[-3000:]
    # The line is redrawn in place (erase line, then its new text) while the boot goes on ...
    redraws = re.findall(r"\x1b\[2Kvmtest: server: booting \((\d+)s\)", raw)
    assert redraws, raw[-3000:]
    # ... and ends as its final text, above the test's result.
    final = raw.rindex("vmtest: server: booting: done in ")
    assert re.search(r"test_user.py::test_boots .*PASSED", raw[final:])
