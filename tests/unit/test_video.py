"""Screen videos: the ffconcat script, ffmpeg's command line, and a real encode of made-up frames."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from vmtest.machine.video import ScreenFrames, encode, encode_argv, sequence


def test_each_tick_shows_the_frame_on_the_screen_then() -> None:
    frames = [(Path("a.png"), 10.0), (Path("b.png"), 12.5), (Path("c.png"), 12.7)]
    # 2 fps from 10.0 to 13.5: ticks at 10.0, 10.5, ..., 13.0
    assert sequence(frames, 13.5, 2.0) == [0, 0, 0, 0, 0, 1, 2]
    assert sequence(frames[:1], 10.0, 2.0) == [0]  # one frame still makes a (one-frame) video
    assert sequence([], 13.0, 2.0) == []


def test_encode_argv_fits_frames_into_an_even_size() -> None:
    argv = encode_argv("ffmpeg", Path("/f/%06d.png"), Path("/o/web.mp4"), 2.0, (1023, 767))
    vf = argv[argv.index("-vf") + 1]
    assert vf == "scale=1024:768:force_original_aspect_ratio=decrease,pad=1024:768:(ow-iw)/2:(oh-ih)/2"
    assert argv[argv.index("-framerate") + 1] == "2" and argv[argv.index("-i") + 1] == "/f/%06d.png"
    assert argv[argv.index("-c:v") + 1] == "libx264" and argv[-1] == "/o/web.mp4"
    assert "-nostdin" in argv  # never reads the terminal


class _FakeVM:
    """Only for the encode test: frames made here, not by screendump."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(virtualisation=SimpleNamespace(resolution=(320, 240)))
        self.channels = None

    def is_running(self) -> bool:
        return False


def test_capture_never_starts_a_stopped_machine(tmp_path: Path) -> None:
    vm: Any = _FakeVM()
    frames = ScreenFrames(vm, tmp_path / "frames")
    assert frames.capture() is False and frames.frames == [] and not (tmp_path / "frames").exists()


def test_encode_makes_a_video_of_the_real_duration(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg; ./run installs it)")
    vm: Any = _FakeVM()
    frames = ScreenFrames(vm, tmp_path / "frames")
    frames.directory.mkdir()
    # a small early screen (as VGA text mode) then two full-size ones
    for i, (size, at) in enumerate((((160, 100), 0.0), ((320, 240), 1.0), ((320, 240), 2.5))):
        path = frames.directory / f"{i:06d}.png"
        Image.new("RGB", size, (40 * i, 80, 120)).save(path)
        frames.frames.append((path, at))
    video = encode(frames, tmp_path / "web-screen.mp4", 4.0, 2.0, logging.getLogger("test"))
    assert video == tmp_path / "web-screen.mp4" and not frames.directory.exists()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(video)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
    assert float(info["format"]["duration"]) == pytest.approx(4.0)
    assert int(stream["nb_read_frames"]) == 8  # 4 s at 2 frames per second
