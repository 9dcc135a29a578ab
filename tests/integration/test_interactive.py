"""Interactive debugging with real guests: ``vmtest shell``, ``--vm-keep-on-failure`` + ``vmtest attach``,
``--pdb``, ``--vm-debug-hook``; each driven through a pseudo-terminal (pexpect) as a person would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.integration.conftest import PYTEST, REPO
from vmtest.core.proc import SUPERVISOR

pytestmark = pytest.mark.integration
# the guest's bash prompt on the attach console (root@<host name>:<dir># )
PROMPT = r"root@[\w-]+:[^\r\n]*# "


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


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid``, None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]))


def _live() -> dict[int, tuple[int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = st
    return found


def descendants(pid: int, mentioning: str = "") -> set[int]:
    """The live descendants of ``pid`` whose command line contains ``mentioning`` (QEMUs of another
    helper's runs, of the same node name, are not ours)."""
    live = _live()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in live.items() if ppid in frontier} - found
        found |= frontier
    return {p for p in found if mentioning in _cmdline(p)}


def group(pgid: int, mentioning: str = "") -> set[int]:
    """The live members of process group ``pgid`` whose command line contains ``mentioning`` (not the
    supervisor leading it, whose command line holds its child's)."""
    members = {p for p, (_, g) in _live().items() if g == pgid}
    return {p for p in members if mentioning in _cmdline(p) and SUPERVISOR not in _cmdline(p)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gone(pids: set[int], within: float = 15.0) -> set[int]:
    """The pids of ``pids`` still alive after waiting up to ``within`` seconds for them to end."""
    deadline = time.monotonic() + within
    while (left := {p for p in pids if _stat(p) is not None}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_vmtest_shell_boots_the_example_and_evaluates_at_the_prompt():
    child = spawn(sys.executable, "-m", "vmtest.cli", "shell", "examples/test_webserver.py::test_webserver")
    try:
        child.expect_exact("vmtest shell: examples/test_webserver.py::test_webserver")
        child.expect_exact(">>> ")
        assert descendants(child.pid, "qemu-system") == set()  # nothing boots before it is used
        child.sendline('server.succeed("hostname")')
        child.expect(r"'server\\n'\r\n>>> ")
        child.timeout = 300  # the images are built by now: no step at the prompt takes minutes
        child.sendline("server.wait_for_open_port(80)")  # as the test's body does: nginx may still start
        child.expect_exact(">>> ")
        child.sendline('client.succeed("curl -sf http://server/")')
        child.expect(r"'hello from server\\n'\r\n>>> ")
        # shell_interact(): a root shell through the virtio console (hvc0); Ctrl-] returns to the REPL.
        child.sendline("server.shell_interact()")
        child.expect_exact("root shell")
        # a prompt first: typed while agetty's autologin starts the shell, the line is flushed away
        child.expect(PROMPT)
        child.sendline("echo I am $(id -un) on $(hostname) via $(tty)")
        child.expect(r"I am root on server via /dev/hvc0\r\n")
        child.send("\x1d")
        child.expect_exact(">>> ")
        # console_interact(): what the guest prints on ttyS0 shows here, and keys reach ttyS0.
        child.sendline("server.succeed('(sleep 3; echo console-hello > /dev/ttyS0) >/dev/null 2>&1 &')")
        child.expect_exact(">>> ")
        child.sendline("server.succeed('(timeout 60 head -c 5 /dev/ttyS0 > /tmp/typed) >/dev/null 2>&1 &')")
        child.expect_exact(">>> ")
        child.sendline("server.console_interact()")
        child.expect_exact("serial console")
        child.expect_exact("console-hello")
        child.send("abcde\r")
        time.sleep(1)
        child.send("\x1d")
        child.expect_exact(">>> ")
        child.sendline("server.wait_until_succeeds('test -s /tmp/typed && cat /tmp/typed', timeout=30)")
        child.expect(r"'abcde'\r\n>>> ")
        ours = descendants(child.pid)
        assert len({p for p in ours if "process=vmtest-server" in _cmdline(p)}) == 1
        assert len({p for p in ours if "process=vmtest-client" in _cmdline(p)}) == 1
        assert {p for p in ours if "vde_switch" in _cmdline(p)}
        child.sendeof()
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    assert gone(ours) == set()  # QEMUs, switches, everything the shell started


def demo_failure(tmp_path, *tests: str, options: tuple[str, ...] = ()) -> pexpect.spawn:
    """pytest on examples/test_failing.py's ``tests`` (they fail on purpose) with ``options``."""
    return spawn(
        *PYTEST,
        *(f"examples/test_failing.py::{t}" for t in tests),
        "--run-demo-failures",
        f"--vm-output-dir={tmp_path / 'out'}",
        *options,
    )


def _vmtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmtest.cli", *args], capture_output=True, text=True, cwd=REPO)


# long enough for the attach and kill steps below on a loaded host, short enough not to idle the suite
KEEP_FOR = 40


def test_keep_on_failure_attach_kill_and_time_limit(tmp_path):
    run = demo_failure(
        tmp_path,
        "test_wrong_expectation",
        "test_factory_machine_fails",
        # Cold boots: web's time limit runs from its failure, while box still starts; a first start that
        # saves a snapshot (a new image: every test's first run on a fresh host) took 32 s under the
        # suite's load, longer than the limit, and web was gone before pytest had ended.
        options=("--vm-keep-on-failure", f"--vm-keep-for={KEEP_FOR}s", "--vm-snapshots=off"),
    )
    run.expect(pexpect.EOF, timeout=900)
    run.close()
    output = run.before
    assert run.exitstatus == 1, output
    kept_at = time.monotonic()
    web = re.search(r"web: attach a root shell: vmtest attach (web-(\d+))", output)
    box = re.search(r"box: attach a root shell: vmtest attach (box-(\d+))", output)
    assert web and box, output
    assert f"vmtest kill {web.group(1)}" in output
    web_pid, box_pid = int(web.group(2)), int(box.group(2))
    web_qemu, box_qemu = group(web_pid, "process=vmtest-web"), group(box_pid, "process=vmtest-box")
    try:
        # pytest has exited; both machines run on (each QEMU in its supervisor's process group).
        assert len(web_qemu) == 1 and len(box_qemu) == 1
        ps = _vmtest("ps")
        assert web.group(1) in ps.stdout and box.group(1) in ps.stdout, ps.stdout
        registry = Path(os.environ.get("VMTEST_CACHE_DIR") or Path.home() / ".cache/vmtest") / "kept"
        entries = [json.loads((registry / f"{m.group(1)}.json").read_text()) for m in (web, box)]
        directories = [Path(d) for e in entries for d in (e["state_dir"], *e["rmdir"])]
        assert all(d.is_dir() for d in directories)
        # The printed command gives a root shell in the kept machine.
        shell = spawn(sys.executable, "-m", "vmtest.cli", "attach", web.group(1), timeout=120)
        shell.expect_exact("root shell")
        # a prompt first: typed while agetty's autologin starts the shell, the line is flushed away
        shell.expect(PROMPT)
        shell.sendline("echo I am $(id -un) on $(hostname)")
        shell.expect(r"I am root on web\r\n")
        shell.sendline("curl --version | head -1")
        shell.expect(r"curl \d")
        shell.send("\x1d")  # Ctrl-]
        shell.expect(pexpect.EOF, timeout=30)
        shell.close()
        assert shell.exitstatus == 0
        # vmtest kill ends it at once.
        killed = _vmtest("kill", web.group(1))
        assert f"killed {web.group(1)}" in killed.stdout, killed.stdout + killed.stderr
        assert gone(web_qemu | {web_pid}, within=10) == set()
        # Nobody kills box: its time limit does (KEEP_FOR s after it was kept, a little before kept_at).
        assert gone(box_qemu, within=1) == box_qemu
        left = KEEP_FOR - (time.monotonic() - kept_at)
        assert gone(box_qemu | {box_pid}, within=left + 20) == set()
        assert time.monotonic() - kept_at > KEEP_FOR - 15, "box ended well before its time limit"
        ps = _vmtest("ps")
        assert web.group(1) not in ps.stdout and box.group(1) not in ps.stdout, ps.stdout
        assert [d for d in directories if d.exists()] == []  # state and network directories removed
    finally:
        for kept in (web.group(1), box.group(1)):
            _vmtest("kill", kept)  # a no-op for one already ended


def test_pdb_stops_with_the_machines_usable(tmp_path):
    run = demo_failure(tmp_path, "test_wrong_expectation", options=("--pdb",))
    try:
        run.expect_exact("(Pdb) ", timeout=900)
        ours = descendants(run.pid, "process=vmtest-web")
        assert len(ours) == 1  # the machine still runs at the prompt
        run.sendline('web.succeed("hostname")')
        run.expect(r"'web\\n'\r\n\(Pdb\) ")
        run.sendline('web.succeed("curl --version").split()[0]')
        run.expect(r"'curl'\r\n\(Pdb\) ")
        run.sendline("c")
        run.expect(pexpect.EOF, timeout=120)
    finally:
        run.close(force=True)
    assert run.exitstatus == 1
    assert gone(ours) == set()


def test_debug_hook_pauses_with_the_machines_running(tmp_path):
    run = demo_failure(tmp_path, "test_wrong_expectation", options=("--vm-debug-hook",))
    try:
        run.expect(r"web: vmtest attach (\S+attach\.sock)", timeout=900)
        socket = run.match.group(1)
        run.expect(r"continue with Enter here, `kill -USR1 (\d+)` or `touch (\S+)`")
        time.sleep(3)
        ours = descendants(run.pid, "process=vmtest-web")
        assert len(ours) == 1  # paused, not ended
        shell = spawn(sys.executable, "-m", "vmtest.cli", "attach", socket, timeout=120)
        shell.expect_exact("root shell")
        # a prompt first: typed while agetty's autologin starts the shell, the line is flushed away
        shell.expect(PROMPT)
        shell.sendline("echo I am $(id -un) on $(hostname)")
        shell.expect(r"I am root on web\r\n")
        shell.send("\x1d")
        shell.expect(pexpect.EOF, timeout=30)
        shell.close()
        assert len(descendants(run.pid, "process=vmtest-web")) == 1  # still paused
        run.sendline("")  # Enter: the test goes on to its end (failed) and teardown
        run.expect(r"1 failed", timeout=120)
        run.expect(pexpect.EOF, timeout=60)
    finally:
        run.close(force=True)
    assert run.exitstatus == 1
    assert gone(ours) == set()


def test_keep_on_failure_a_killed_run_leaves_nothing(tmp_path):
    """With --vm-keep-on-failure children are supervised instead of dying by PR_SET_PDEATHSIG: a run
    killed with SIGKILL (so nothing was kept) still takes its QEMU and its supervisor with it."""
    test_file = tmp_path / "test_victim.py"
    test_file.write_text(
        "import time\nfrom vmtest import MachineConfig\n\n"
        "def test_victim(vm_factory):\n"
        "    vm = vm_factory('victim', MachineConfig())\n"
        "    vm.succeed('true')\n"
        "    print('VM-UP', flush=True)\n"
        "    time.sleep(600)\n"
    )
    run = spawn(*PYTEST, "-s", "-q", "--vm-keep-on-failure", str(test_file))
    try:
        run.expect_exact("VM-UP", timeout=900)
        ours = descendants(run.pid)
        assert len({p for p in ours if SUPERVISOR in _cmdline(p)}) == 1
        assert len({p for p in ours if _cmdline(p).startswith("qemu-system")}) == 1
        os.kill(run.pid, signal.SIGKILL)
        run.expect(pexpect.EOF, timeout=30)
    finally:
        run.close(force=True)
    assert gone(ours, within=10) == set()
