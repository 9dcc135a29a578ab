"""A machine's screen over time: frames taken by QMP ``screendump``, encoded into a video by ffmpeg.

:class:`ScreenFrames` keeps one PNG per change of the screen with the time it
was taken (an unchanged screen adds no file, it only lasts longer). It never
starts a machine: a machine that is not running adds no frame. :func:`encode`
turns the frames into an H.264 MP4 at a constant frame rate whose timing is
the real one (each tick of the video shows the frame that was on the screen
then: :func:`sequence`), every frame scaled and padded to one size (the
early VGA text screen is smaller than the framebuffer console).
:func:`sequence` and :func:`encode_argv` are pure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from vmtest.core import proc
from vmtest.core.errors import ConfigError
from vmtest.vm.lifecycle import VM

Frame = tuple[Path, float]  # (PNG, time.monotonic() when it was taken)


class ScreenFrames:
    """The frames of one machine's screen, in ``directory``."""

    def __init__(self, vm: VM, directory: Path) -> None:
        self.vm = vm
        self.directory = directory
        self.frames: list[Frame] = []
        self.taken = 0  # screendumps that worked (changed or not)
        self._last: bytes | None = None

    def capture(self) -> bool:
        """One screendump if the machine runs (True when it worked)."""
        channels = self.vm.channels
        if channels is None or not self.vm.is_running():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.frames):06d}.png"
        at = time.monotonic()
        try:
            channels.monitor.command("screendump", filename=str(path.absolute()), format="png")
            digest = hashlib.sha256(path.read_bytes()).digest()
        except Exception:  # the machine stopped meanwhile, or QEMU has no display yet
            path.unlink(missing_ok=True)
            return False
        self.taken += 1
        if digest == self._last:
            path.unlink()
        else:
            self._last = digest
            self.frames.append((path, at))
        return True


def sequence(frames: Sequence[Frame], end: float, fps: float) -> list[int]:
    """For each tick of a video at ``fps`` from the first frame to ``end``: the index of the frame on the
    screen then (the last one taken at or before the tick)."""
    if not frames:
        return []
    first = frames[0][1]
    ticks = max(1, round((end - first) * fps))
    shown, out = 0, []
    for k in range(ticks):
        t = first + k / fps
        while shown + 1 < len(frames) and frames[shown + 1][1] <= t:
            shown += 1
        out.append(shown)
    return out


def encode_argv(ffmpeg: str, pattern: Path, dest: Path, fps: float, size: tuple[int, int]) -> list[str]:
    """ffmpeg's command line: the numbered PNGs ``pattern`` (``.../%06d.png``) played at ``fps`` frames per
    second, each fitted into ``size`` (even numbers, as yuv420p wants), H.264 in an MP4 that browsers can
    start playing before it is loaded."""
    w, h = (v + v % 2 for v in size)
    fit = f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-framerate",
        f"{fps:g}",
        "-i",
        str(pattern),
        "-vf",
        fit,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-movflags",
        "+faststart",
        str(dest),
    ]


def find_ffmpeg() -> str:
    """ffmpeg's path, or a ConfigError saying how to get it."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise ConfigError(
            "record",
            True,
            "recording screens needs ffmpeg, which is not on PATH",
            "apt-get install ffmpeg (or drop --vm-record)",
        )
    return found


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, dest)


def encode(frames: ScreenFrames, dest: Path, end: float, fps: float, logger: logging.Logger) -> Path | None:
    """Encode the frames into ``dest`` (None when there are none); the frames are removed."""
    try:
        if not frames.frames:
            return None
        ticks = frames.directory / "ticks"  # one file per video frame: hard links to the frames
        ticks.mkdir()
        for k, index in enumerate(sequence(frames.frames, end, fps)):
            _link(frames.frames[index][0], ticks / f"{k:06d}.png")
        size = frames.vm.config.virtualisation.resolution
        argv = encode_argv(find_ffmpeg(), ticks / "%06d.png", dest, fps, size)
        proc.run(argv, what="ffmpeg", logger=logger, timeout=600)
        return dest
    finally:
        shutil.rmtree(frames.directory, ignore_errors=True)
