"""``--vm-record``: the X11 example's screen is recorded into a video that plays (ffprobe reads it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration


PROBE = """
<script>
window.addEventListener('load', () => {
  const root = document.documentElement.dataset;
  const video = document.querySelector('.vmtest-machine[data-machine="desktop"] video.vmtest-video');
  if (!video) { root.vmtestVideo = 'none'; return; }
  video.addEventListener('loadedmetadata', () => {
    root.vmtestVideo = `${video.duration.toFixed(1)} ${video.videoWidth}x${video.videoHeight}`;
  });
  video.addEventListener('error', () => { root.vmtestVideo = `error ${video.error && video.error.code}`; });
  video.load();
});
</script>
"""


def test_x11_example_recorded_into_a_video(tmp_path, chromium_dom, run_pytest):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg; ./run installs it)")
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (it is in vmtest's dev extras)")
    out = tmp_path / "out"
    report = tmp_path / "report.html"
    proc = run_pytest(
        "examples/test_x11.py", "--vm-record", f"--vm-output-dir={out}", f"--html={report}", "-rA", timeout=1500
    )
    text = proc.output
    assert proc.returncode == 0, text[-3000:]
    videos = list(out.glob("*/desktop-screen.mp4"))
    assert len(videos) == 1, (sorted(p.relative_to(out) for p in out.rglob("*")), text[-3000:])
    video = videos[0]
    assert not list(video.parent.glob(".frames-*")), "the frames are removed once encoded"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(video)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    duration = float(info["format"]["duration"])
    frames = int(stream["nb_read_frames"])
    print(f"video {video.name}: {duration:.1f}s, {frames} frames, {stream['width']}x{stream['height']}")
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 1024, 768)
    assert duration > 5, info
    assert frames == pytest.approx(duration * 2, abs=1)  # 2 frames per second (--vm-record-interval 0.5)
    # The report names the video, and the HTML report links it (relative to the report).
    assert f"desktop: {video}" in text, text[-3000:]
    assert f"{video.relative_to(tmp_path)}" in report.read_text()
    # ... and Chromium plays it from the report (its metadata loads: duration and size).
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    # Headless Chromium's media pipeline sometimes misses its virtual-time budget on a loaded 2-core host
    # (the metadata event never fires): a few tries, each a fresh load of the page.
    for _ in range(3):
        played = re.search(r' data-vmtest-video="([^"]*)"', chromium_dom(probe))
        if played is not None:
            break
    assert played is not None, "Chromium never loaded the video's metadata (3 tries)"
    seconds, size = played.group(1).split(" ")
    assert size == "1024x768" and float(seconds) == pytest.approx(duration, abs=0.6), played.group(1)
