"""Interactive debugging with real guests: ``vmtest shell``, ``--vm-keep-on-failure`` + ``vmtest attach``,
``--pdb``, ``--vm-debug-hook``; each driven through a pseudo-terminal (pexpect) as a person would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
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


def demo_failure(tmp_path, *tests: str, options: tuple[str, ...] = ()) -> pexpect.spawn:
    """pytest on examples/test_failing.py's ``tests`` (they fail on purpose) with ``options``."""
    return spawn(
        sys.executable,
        "-m",
        "pytest",
        *(f"examples/test_failing.py::{t}" for t in tests),
        "--run-demo-failures",
        "-p",
        "no:cacheprovider",
        "-o",
        "log_cli=false",
        f"--vm-output-dir={tmp_path / 'out'}",
        *options,
    )


def test_keep_on_failure_attach_kill_and_time_limit(tmp_path, processes_mentioning):
    run = demo_failure(
        tmp_path,
        "test_wrong_expectation",
        "test_factory_machine_fails",
        options=("--vm-keep-on-failure", "--vm-keep-for=75s"),
    )
    run.expect(pexpect.EOF, timeout=900)
    run.close()
    output = run.before
    assert run.exitstatus == 1, output
    kept_at = time.monotonic()
    web = re.search(r"web: attach a root shell: vmtest attach (web-\d+)", output)
    box = re.search(r"box: attach a root shell: vmtest attach (box-\d+)", output)
    assert web and box, output
    assert f"vmtest kill {web.group(1)}" in output
    web_pid, box_pid = (int(m.group(1).rsplit("-", 1)[1]) for m in (web, box))
    try:
        # pytest has exited; both machines run on.
        assert len(processes_mentioning("process=vmtest-web")) == 1
        assert len(processes_mentioning("process=vmtest-box")) == 1
        ps = subprocess.run([sys.executable, "-m", "vmtest.cli", "ps"], capture_output=True, text=True, cwd=REPO)
        assert web.group(1) in ps.stdout and box.group(1) in ps.stdout, ps.stdout
        # The printed command gives a root shell in the kept machine.
        shell = spawn(sys.executable, "-m", "vmtest.cli", "attach", web.group(1), timeout=120)
        shell.expect_exact("root shell")
        shell.sendline("echo I am $(id -un) on $(hostname)")
        shell.expect(r"I am root on web\r\n")
        shell.sendline("curl --version | head -1")
        shell.expect(r"curl \d")
        shell.send("\x1d")  # Ctrl-]
        shell.expect(pexpect.EOF, timeout=30)
        shell.close()
        assert shell.exitstatus == 0
        # vmtest kill ends it at once.
        killed = subprocess.run(
            [sys.executable, "-m", "vmtest.cli", "kill", web.group(1)], capture_output=True, text=True, cwd=REPO
        )
        assert f"killed {web.group(1)}" in killed.stdout, killed.stdout + killed.stderr
        assert no_process_left(processes_mentioning, "process=vmtest-web", within=10) == {}
        # Nobody kills box: its time limit does (75 s after it was kept).
        assert len(processes_mentioning("process=vmtest-box")) == 1
        left = 75 - (time.monotonic() - kept_at)
        assert no_process_left(processes_mentioning, "process=vmtest-box", within=left + 20) == {}
        assert time.monotonic() - kept_at > 60, "box ended well before its time limit"
        ps = subprocess.run([sys.executable, "-m", "vmtest.cli", "ps"], capture_output=True, text=True, cwd=REPO)
        assert web.group(1) not in ps.stdout and box.group(1) not in ps.stdout, ps.stdout
    finally:
        for pid in (web_pid, box_pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    assert no_process_left(processes_mentioning, "vmtest.core.supervisor") == {}


def test_pdb_stops_with_the_machines_usable(tmp_path, processes_mentioning):
    run = demo_failure(tmp_path, "test_wrong_expectation", options=("--pdb",))
    try:
        run.expect_exact("(Pdb) ", timeout=900)
        run.sendline('web.succeed("hostname")')
        run.expect(r"'web\\n'\r\n\(Pdb\) ")
        run.sendline('web.succeed("curl --version").split()[0]')
        run.expect(r"'curl'\r\n\(Pdb\) ")
        run.sendline("c")
        run.expect(pexpect.EOF, timeout=120)
    finally:
        run.close(force=True)
    assert run.exitstatus == 1
    assert no_process_left(processes_mentioning, "process=vmtest-web") == {}


def test_debug_hook_pauses_with_the_machines_running(tmp_path, processes_mentioning):
    run = demo_failure(tmp_path, "test_wrong_expectation", options=("--vm-debug-hook",))
    try:
        run.expect(r"web: vmtest attach (\S+attach\.sock)", timeout=900)
        socket = run.match.group(1)
        run.expect(r"continue with Enter here, `kill -USR1 (\d+)` or `touch (\S+)`")
        time.sleep(3)
        assert len(processes_mentioning("process=vmtest-web")) == 1  # paused, not ended
        shell = spawn(sys.executable, "-m", "vmtest.cli", "attach", socket, timeout=120)
        shell.expect_exact("root shell")
        shell.sendline("echo I am $(id -un) on $(hostname)")
        shell.expect(r"I am root on web\r\n")
        shell.send("\x1d")
        shell.expect(pexpect.EOF, timeout=30)
        shell.close()
        run.sendline("")  # Enter: the test goes on to its end (failed) and teardown
        run.expect(r"1 failed", timeout=120)
        run.expect(pexpect.EOF, timeout=60)
    finally:
        run.close(force=True)
    assert run.exitstatus == 1
    assert no_process_left(processes_mentioning, "process=vmtest-web") == {}
