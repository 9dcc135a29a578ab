"""Interactive debugging with real guests: ``vmtest shell``, ``--vm-keep-on-failure`` + ``vmtest attach``,
``--pdb``, ``--vm-debug-hook``; each driven through a pseudo-terminal (pexpect) as a person would."""

from __future__ import annotations

import os
import sys
import time

import pexpect
import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def spawn(*argv: str, timeout: float = 900, env: dict[str, str] | None = None) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0],
        list(argv[1:]),
        cwd=str(REPO),
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
        dimensions=(50, 200),
    )
    child.logfile_read = sys.stdout
    return child


def no_process_left(processes_mentioning, text: str, within: float = 15.0) -> dict[int, str]:
    deadline = time.monotonic() + within
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_vmtest_shell_boots_the_example_and_evaluates_at_the_prompt(processes_mentioning):
    child = spawn(sys.executable, "-m", "vmtest.cli", "shell", "examples/test_webserver.py::test_webserver")
    try:
        child.expect_exact("vmtest shell: examples/test_webserver.py::test_webserver")
        child.expect_exact(">>> ")
        assert processes_mentioning("process=vmtest-server") == {}  # nothing boots before it is used
        child.sendline('server.succeed("hostname")')
        child.expect(r"'server\\n'\r\n>>> ")
        child.sendline('client.succeed("curl -sf http://server/")')
        child.expect(r"'hello from server\\n'\r\n>>> ")
        assert len(processes_mentioning("process=vmtest-server")) == 1
        child.sendeof()
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    assert no_process_left(processes_mentioning, "process=vmtest-server") == {}
    assert no_process_left(processes_mentioning, "process=vmtest-client") == {}
    assert no_process_left(processes_mentioning, "vde_switch") == {}
