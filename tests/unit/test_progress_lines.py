"""Progress events (vmtest.core.progress) and their display (vmtest.plugin.progress), without a VM."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from _pytest._io import TerminalWriter

from vmtest.core import progress
from vmtest.core.log import nested
from vmtest.plugin.progress import Display, describe


def test_activity_emits_start_steps_and_end() -> None:
    events: list[progress.Event] = []
    unsubscribe = progress.subscribe(events.append)
    try:
        progress.step("outside any activity: ignored")
        with progress.activity("image bookworm: curl", "building image 3f2a"):
            with nested(logging.getLogger("vmtest.test"), "mmdebstrap bookworm"):
                pass
        with pytest.raises(RuntimeError), progress.activity("server", "booting"):
            raise RuntimeError("boom")
    finally:
        unsubscribe()
    with progress.activity("nobody", "listening"):
        pass
    assert [(e.subject, e.step, e.outcome) for e in events] == [
        ("image bookworm: curl", "", ""),
        ("image bookworm: curl", "mmdebstrap bookworm", ""),
        ("image bookworm: curl", "", "done"),
        ("server", "", ""),
        ("server", "", "failed"),
    ]
    assert describe(events[2]).startswith("image bookworm: curl: building image 3f2a: done in ")
    assert describe(events[1], now=events[1].started + 12.4) == (
        "image bookworm: curl: building image 3f2a - mmdebstrap bookworm (12s)"
    )


def test_activities_in_threads_keep_their_own_steps() -> None:
    events: list[progress.Event] = []
    unsubscribe = progress.subscribe(events.append)

    def boot(name: str) -> None:
        with progress.activity(name, "booting"):
            progress.step(f"{name}-step")

    try:
        threads = [threading.Thread(target=boot, args=(n,)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        unsubscribe()
    assert {(e.subject, e.step) for e in events if e.step} == {("a", "a-step"), ("b", "b-step"), ("c", "c-step")}


class FakeReporter:
    def __init__(self) -> None:
        self.file = io.StringIO()
        self._tw = TerminalWriter(self.file)
        self._tw.fullwidth = 80
        self.currentfspath: object = "test_x.py"

    def ensure_newline(self) -> None:
        if self.currentfspath:
            self._tw.line()
            self.currentfspath = None

    def write_line(self, line: str) -> None:
        self.ensure_newline()
        self._tw.line(line)


def test_plain_display_writes_one_line_per_event() -> None:
    reporter = FakeReporter()
    reporter._tw.write("test_x.py::test_a ")
    display = Display(reporter, tty=False)  # type: ignore[arg-type]
    start = progress.Event("server", "booting", 0.0)
    display.on_event(start)
    display.on_event(progress.Event("server", "booting", 0.0, step="waiting"))
    display.on_event(progress.Event("server", "booting", 0.0, outcome="done", ended=23.44))
    assert reporter.file.getvalue() == (
        "test_x.py::test_a \n"
        "vmtest: server: booting\n"
        "vmtest: server: booting - waiting\n"
        "vmtest: server: booting: done in 23.4s"
    )
    assert reporter.currentfspath is None  # pytest's next output starts on a new line


def test_terminal_display_redraws_one_line_per_subject() -> None:
    reporter = FakeReporter()
    reporter._tw.write("test_x.py::test_a ")
    display = Display(reporter, tty=True)  # type: ignore[arg-type]
    display.on_event(progress.Event("image base", "building", 0.0, outcome="done", ended=60.0))
    display.on_event(progress.Event("server", "booting", 0.0, outcome="done", ended=20.0))
    display.finish()
    out = reporter.file.getvalue()
    assert out == (
        "test_x.py::test_a \n"
        "\x1b[2Kvmtest: image base: building: done in 60.0s"
        "\r\x1b[2Kvmtest: image base: building: done in 60.0s\n"
        "\x1b[2Kvmtest: server: booting: done in 20.0s"
    )
    assert reporter.currentfspath is None  # pytest's next output starts on a new line
    # A new test's block starts below the old one, on a line of its own.
    display.on_event(progress.Event("client", "booting", 0.0, outcome="done", ended=5.0))
    assert reporter.file.getvalue() == out + "\n\x1b[2Kvmtest: client: booting: done in 5.0s"


EMITTER = """
from vmtest.core import progress

def test_emits():
    with progress.activity("server", "booting"):
        progress.step("waiting for the shell")
"""


def _run_pytest(tmp_path, *args: str) -> str:
    import os
    import subprocess
    import sys

    (tmp_path / "test_emitter.py").write_text(EMITTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_") and k != "CI"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, "test_emitter.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_plugin_shows_progress_in_a_users_project(tmp_path) -> None:
    out = _run_pytest(tmp_path, "-v")
    lines = out.splitlines()
    start = lines.index("vmtest: server: booting")
    assert lines[start + 1] == "vmtest: server: booting - waiting for the shell"
    assert lines[start + 2].startswith("vmtest: server: booting: done in ")
    assert lines[start + 3].startswith("test_emitter.py::test_emits PASSED")
    assert "vmtest: server" not in _run_pytest(tmp_path, "-q")
    assert "vmtest: server" not in _run_pytest(tmp_path, "-v", "-o", "log_cli=true")


SLOW = """
import time
from vmtest.core import progress

def test_slow():
    with progress.activity("server", "booting"):
        time.sleep(60)
"""


def test_ctrl_c_ends_a_run_at_once_while_the_terminal_line_ticks(tmp_path) -> None:
    import os
    import signal
    import sys
    import time

    import pexpect

    (tmp_path / "test_slow.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_") and k != "CI"}
    env["TERM"] = "xterm"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pytest", "-p", "no:cacheprovider", "-v", "test_slow.py"],
        cwd=str(tmp_path),
        env=env,
        dimensions=(30, 120),
        timeout=30,
    )
    child.expect(r"vmtest: server: booting \(2s\)")  # the ticker thread redraws the line
    sent = time.monotonic()
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    took = time.monotonic() - sent
    child.close()
    assert took < 5, took
    assert "KeyboardInterrupt" in child.before.decode(errors="replace")
