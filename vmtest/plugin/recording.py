"""``--vm-record``: every machine's screen is recorded while a test runs.

One daemon thread per test takes, every ``record_interval`` seconds, a
screendump of each running machine with a display (of every driver the test
has, including machines that start later). It only waits on an event, so it
never delays Ctrl-C, and it never starts a machine. When the test's body
ends (or its setup fails) the thread stops and each machine's frames are
encoded into ``<output dir>/<test>/<machine>-screen.mp4``
(:mod:`vmtest.machine.video`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmtest.core.log import get_logger
from vmtest.core.threads import signals_to_main
from vmtest.machine.machine import Machine
from vmtest.machine.video import ScreenFrames, encode


class Recorder:
    def __init__(self, machines: Callable[[], list[Machine]], out: Path, interval: float) -> None:
        self.machines = machines
        self.out = out
        self.interval = interval
        self.frames: dict[str, ScreenFrames] = {}
        self.logger = get_logger("record")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmtest-record", daemon=True)
        self.videos: dict[str, Path] | None = None  # once finished

    def start(self) -> None:
        with signals_to_main():
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                machines = self.machines()
            except RuntimeError:  # a machine was added while we looked (create_machine): next time
                machines = []
            for machine in machines:
                if self._stop.is_set():
                    return
                if not machine.config.virtualisation.graphics:
                    continue
                if machine.name not in self.frames:
                    self.frames[machine.name] = ScreenFrames(machine.vm, self.out / f".frames-{machine.name}")
                self.frames[machine.name].capture()
            self._stop.wait(max(self.interval - (time.monotonic() - began), 0.05))

    def finish(self) -> dict[str, Path]:
        """Stop taking frames and encode each machine's video (once); the videos by machine name."""
        if self.videos is not None:
            return self.videos
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # at most one screendump per machine in flight
        end = time.monotonic()
        self.videos = {}
        for name, frames in self.frames.items():
            dest = self.out / f"{name}-screen.mp4"
            try:
                video = encode(frames, dest, end, 1 / self.interval, self.logger)
            except Exception as exc:  # a report must not fail because a video did
                self.logger.warning("%s: no screen video: %s", name, exc)
                continue
            if video is not None:
                self.logger.info("%s: screen video %s (%d screendumps)", name, video, frames.taken)
                self.videos[name] = video
        return self.videos


RECORDER_KEY = pytest.StashKey[Recorder]()


def begin(item: pytest.Item, machines: Callable[[], list[Machine]], out: Path, interval: float) -> None:
    recorder = Recorder(machines, out, interval)
    item.stash[RECORDER_KEY] = recorder
    recorder.start()


def finish(item: pytest.Item) -> dict[str, Path]:
    """The test's videos (none when it was not recorded); stops its recorder first."""
    recorder = item.stash.get(RECORDER_KEY, None)
    return recorder.finish() if recorder is not None else {}
