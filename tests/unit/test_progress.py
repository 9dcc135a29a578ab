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
        "vmtest: server: booting: done in 23.4s\n"
    )


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
