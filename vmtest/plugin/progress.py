"""Progress on pytest's terminal: which image is being built (and its step), which machine boots, for how long.

:mod:`vmtest.core.progress` emits the events; this module shows them through pytest's terminal reporter:

* on a terminal, one line per subject (machine or image), redrawn in place as it goes on (its elapsed time
  ticks once a second while something runs); the lines stay, final, above the test's result;
* elsewhere (a pipe, CI: ``CI`` set), one plain line per start, step and end;
* nothing with ``-q``, and nothing when pytest's live logging is on (the log says it all).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import pytest

from vmtest.core import progress
from vmtest.core.progress import Event
from vmtest.core.threads import signals_to_main

TICK = 1.0  # seconds between redraws of a running line on a terminal
PREFIX = "vmtest: "


def describe(event: Event, now: float | None = None) -> str:
    """One subject's line: ``server: booting (12.3s)``, ``image ...: building ... - mmdebstrap ... (40s)``,
    ``server: booting: done in 23.4s``."""
    if event.outcome:
        return f"{event.subject}: {event.what}: {event.outcome} in {event.elapsed:.1f}s"
    elapsed = (now or time.monotonic()) - event.started
    step = f" - {event.step}" if event.step else ""
    return f"{event.subject}: {event.what}{step} ({elapsed:.0f}s)"


def live_logging(config: pytest.Config) -> bool:
    return bool(config.getoption("log_cli_level", None) or config.getini("log_cli"))


class Display:
    """The progress lines of the running test on ``reporter``'s terminal (thread-safe)."""

    def __init__(
        self,
        reporter: pytest.TerminalReporter,
        tty: bool,
        uncaptured: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.reporter = reporter
        self.tty = tty
        self.uncaptured = uncaptured  # pytest's output capture is off inside (a test's output is captured)
        self._lock = threading.Lock()
        self._lines: dict[str, Event] = {}  # subject -> its latest event, in order of appearance
        self._drawn = 0  # lines of the block on the screen (tty)
        self.wrote = False  # anything since the last finish()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        with self._lock, self.uncaptured():
            self.wrote = True
            self._lines[event.subject] = event
            if self.tty:
                self._draw()
                self._tick_while_running()
            else:
                self._plain(event)

    def _plain(self, event: Event) -> None:
        if event.outcome:
            text = describe(event)
        elif event.step:
            text = f"{event.subject}: {event.what} - {event.step}"
        else:
            text = f"{event.subject}: {event.what}"
        tw = self.reporter._tw
        # Each on a line of its own, ended by whatever comes next (so that pytest leaves no blank line).
        tw.write(("\n" if tw.width_of_current_line else "") + PREFIX + text, flush=True)
        self.reporter.currentfspath = None

    # -- the block on a terminal -------------------------------------------------------------------

    def _draw(self) -> None:
        tw = self.reporter._tw
        if self._drawn:
            tw.write("\r" + (f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""))
        else:
            self.reporter.ensure_newline()
            if tw.width_of_current_line:
                tw.line()
        width = max(tw.fullwidth - 1, 20)
        now = time.monotonic()
        texts = [(PREFIX + describe(event, now))[:width] for event in self._lines.values()]
        tw.write("\n".join("\x1b[2K" + text for text in texts), flush=True)
        self._drawn = len(texts)
        self.reporter.currentfspath = None  # pytest starts its next output on a line of its own

    def _running(self) -> bool:
        return any(not event.outcome for event in self._lines.values())

    def _tick_while_running(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._stop.clear()
            # A daemon that only redraws: it never holds up the end of a run, and Ctrl-C reaches the
            # main thread as ever.
            self._ticker = threading.Thread(target=self._tick, name="vmtest-progress", daemon=True)
            with signals_to_main():
                self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                if self._stop.is_set() or not self._drawn or not self._running():
                    return
                with self.uncaptured():
                    self._draw()

    def finish(self, nodeid: str = "") -> None:
        """The test's progress is over (pytest reports next): the lines stay as they are, a new block begins.

        Without ``-v`` pytest appends its result letter to the current line: the test's file name is
        written again first (``nodeid``'s, as pytest does at a new file)."""
        with self._lock:
            self._stop.set()
            self._lines.clear()
            self._drawn = 0
            if self.wrote and nodeid and self.reporter.verbosity <= 0:
                with self.uncaptured():
                    self.reporter.write_fspath_result(nodeid, "")
            self.wrote = False


class ProgressPlugin:
    """Registered by the vmtest plugin when progress is shown."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._unsubscribe = progress.subscribe(display.on_event)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.display.finish(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        self.display.finish()

    def pytest_unconfigure(self) -> None:
        self.display.finish()
        self._unsubscribe()


def install(config: pytest.Config) -> None:
    """Show progress on ``config``'s terminal, unless ``-q``, live logging or no terminal reporter."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.get_verbosity() < 0 or live_logging(config):
        return
    tty = bool(reporter.isatty) and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"
    capture = config.pluginmanager.get_plugin("capturemanager")
    uncaptured = capture.global_and_fixture_disabled if capture is not None else nullcontext
    config.pluginmanager.register(ProgressPlugin(Display(reporter, tty, uncaptured)), "vmtest-progress")
