"""Tesseract through pytesseract and vmtest's tesseract-wrapper (the real tesseract, no QEMU)."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from vmtest.core.errors import VmtestError
from vmtest.core.proc import ProcessError
from vmtest.machine import ocr

REPO = Path(__file__).resolve().parents[2]
LINES = ["Debian GNU/Linux 12 vm1 tty1", "Hello world: 42 apples and 7 pears", "The quick brown fox jumps"]

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None or shutil.which("setpriv") is None,
    reason="needs tesseract (tesseract-ocr) and setpriv (util-linux)",
)


def text_image(lines, size=(640, 160), font_size=22, fg=(20, 20, 20), bg=(235, 235, 235)):
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((16, 12 + i * (font_size + 14)), line, fill=fg, font=font)
    return image


def by_hand(image):
    """The tesseract program run directly (no pytesseract), as vmtest ran it before."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.png"
        image.save(src)
        out = subprocess.run(
            ["tesseract", src, "stdout", *ocr.TESSERACT_ARGS],
            check=True,
            capture_output=True,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        ).stdout.decode()
    return "\n".join(line.rstrip() for line in out.rstrip().splitlines())


def test_readings_come_from_pytesseract_and_equal_tesseract_run_by_hand(caplog):
    image = text_image(LINES)
    logger = logging.getLogger("vmtest.test-ocr")
    with caplog.at_level(logging.DEBUG):
        readings = ocr.read_variants(image, logger)  # the variants in parallel threads
        single = ocr.read_variant(image, ocr.PRIMARY_VARIANT, logger)
    assert set(readings) == set(ocr.VARIANTS)
    box = ocr.content_box(image)
    for name, make in ocr.VARIANTS.items():
        assert readings[name] == by_hand(make(image.crop(box))), name
    assert single == readings[ocr.PRIMARY_VARIANT]
    assert "quick brown fox" in single
    # pytesseract started the program (its own debug record: the argv list) ...
    started = [r.args[0] for r in caplog.records if r.name == "pytesseract"]
    assert len(started) == len(ocr.VARIANTS) + 1
    for argv in started:
        assert argv[0] == ocr.tesseract_wrapper() and argv[3:] == [*ocr.TESSERACT_ARGS, "txt"]
    # ... and vmtest logged each argv at DEBUG, like its other external programs
    ours = [r for r in caplog.records if r.name == logger.name and r.getMessage().lstrip().startswith("$ ")]
    assert len(ours) == len(started) and all(r.levelno == logging.DEBUG for r in ours)
    assert ocr.tesseract_wrapper() in ours[0].getMessage()


def test_a_blank_screen_is_not_sent_to_tesseract():
    assert ocr.read_variant(Image.new("RGB", (100, 50), (0, 0, 0)), "raw", logging.getLogger("vmtest.t")) == ""


def busy_image():
    """A page of text big enough to keep one tesseract busy for seconds."""
    words = "vmtest reads screens of QEMU guests with tesseract and a grid reader".split()
    lines = [" ".join(words[(i + j) % len(words)] for j in range(14)) for i in range(60)]
    return text_image(lines, size=(1600, 2200), font_size=20)


def tesseract_children(pid, zombies=False):
    """Processes named tesseract whose parent is ``pid`` (zombies too if ``zombies``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm == "tesseract" and int(ppid) == pid and (zombies or state != "Z"):
            found.append(int(entry.name))
    return found


def test_a_timeout_is_a_process_error_and_kills_tesseract():
    image = busy_image()
    start = time.monotonic()
    with pytest.raises(ProcessError, match=r"tesseract failed \(timed out after 0\.5s\)") as info:
        ocr.tesseract(image, logging.getLogger("vmtest.t"), timeout=0.5)
    assert time.monotonic() - start < 5  # pytesseract: SIGTERM, then SIGKILL after 1 s
    assert isinstance(info.value, VmtestError) and info.value.status is None
    assert info.value.argv[0] == ocr.tesseract_wrapper()
    assert tesseract_children(os.getpid(), zombies=True) == []  # killed and reaped


def test_a_failing_tesseract_is_a_process_error_with_its_message(tmp_path, monkeypatch):
    # a PATH with setpriv but without tesseract: the wrapper's exec fails (status 127)
    (tmp_path / "setpriv").symlink_to(shutil.which("setpriv"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProcessError, match=r"tesseract failed \(exit status 127\)") as info:
        ocr.tesseract(text_image(["x"]), logging.getLogger("vmtest.t"))
    assert "tesseract" in "\n".join(info.value.tail) and "not found" in "\n".join(info.value.tail)


LOOP = """
import logging, sys
sys.path.insert(0, {tests!r})
from test_ocr_tesseract import busy_image
from vmtest.machine import ocr
image = busy_image()
while True:  # the variants in worker threads, then the primary one in the main thread
    ocr.read_variants(image, logging.getLogger("vmtest.loop"))
    ocr.read_variant(image, ocr.PRIMARY_VARIANT, logging.getLogger("vmtest.loop"))
"""


def processes_with(marker):
    """Live processes whose environment contains ``marker`` (inherited from the OCR loop)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            found[int(entry.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
    return found


def test_a_sigkilled_process_leaves_no_tesseract_running(tmp_path):
    marker = f"VMTEST_LEFTOVER_PROBE={uuid.uuid4().hex}"
    key, value = marker.split("=")
    # (TMPDIR: the killed loop cannot remove its temporary files; pytest removes tmp_path)
    loop = subprocess.Popen(
        [sys.executable, "-c", LOOP.format(tests=str(Path(__file__).parent))],
        env={**os.environ, key: value, "TMPDIR": str(tmp_path)},
        cwd=REPO,
    )
    seen = []
    try:
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline and loop.poll() is None:
            seen = tesseract_children(loop.pid)
            time.sleep(0.05)
        assert seen, "the OCR loop never started tesseract"
        assert all(processes_with(marker).get(pid) == "tesseract" for pid in seen)
        os.kill(loop.pid, signal.SIGKILL)
        loop.wait()
        time.sleep(2)
        left = processes_with(marker)
        assert left == {}, f"still alive 2 s after the SIGKILL: {left}"
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
        for pid in processes_with(marker):  # only what this test started
            os.kill(pid, signal.SIGKILL)


def test_the_wrapper_is_executable_in_an_installed_wheel(tmp_path):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO / "vmtest", src / "vmtest", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    # (an isolated build, as tox builds vmtest: setuptools and wheel from the package index)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src],
        check=True,
        cwd=tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("vmtest-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        mode = zf.getinfo("vmtest/machine/tesseract-wrapper").external_attr >> 16
    assert mode & 0o111 == 0o111, oct(mode)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel], check=True)
    check = textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ocr_tesseract import text_image
        from vmtest.machine import ocr
        assert ocr.__file__.startswith({str(site)!r}), ocr.__file__
        print(ocr.tesseract_wrapper())
        print(ocr.read_variant(text_image(["The quick brown fox jumps"]), "gray-2x", logging.getLogger("t")))
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.splitlines()
    assert out[0] == str(site / "vmtest/machine/tesseract-wrapper")
    assert "quick brown fox" in out[1]
    # an install that lost the executable bit: a private copy, and the same reading
    (site / "vmtest/machine/tesseract-wrapper").chmod(0o644)
    again = subprocess.run(
        [sys.executable, "-c", check], env=env, check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.splitlines()
    assert again[0].startswith(tempfile.gettempdir()) and "/vmtest-tesseract-" in again[0]
    assert not Path(again[0]).exists()  # removed at exit
    assert again[1] == out[1]
