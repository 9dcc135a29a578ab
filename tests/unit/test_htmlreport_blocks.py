"""The HTML blocks vmtest puts into pytest-html's report (pure functions, no browser)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from PIL import Image

from vmtest.plugin.htmlreport import link, machine_html, section_html
from vmtest.plugin.report import MachineReport


def _machine(tmp_path: Path) -> MachineReport:
    out = tmp_path / "out" / "test_x"
    out.mkdir(parents=True)
    screen = out / "web-screen.png"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(screen)
    console = out / "web-console.log"
    console.write_text("boot\n")
    journal = out / "web-journal.txt"
    journal.write_text("journal\n")
    return MachineReport("web", "ready", ["line <1>", "a & b"], console, screen, journal)


def test_links_are_relative_to_the_report(tmp_path: Path) -> None:
    assert link(tmp_path / "out" / "a.log", tmp_path / "report") == "../out/a.log"
    assert link(tmp_path / "a.log", None) == (tmp_path / "a.log").as_uri()


def test_machine_block_embeds_the_screenshot_and_escapes_the_console(tmp_path: Path) -> None:
    m = _machine(tmp_path)
    block = machine_html(m, tmp_path / "report")
    data = re.search(r'class="vmtest-screen"[^>]*src="data:image/png;base64,([^"]+)"', block)
    assert data is not None
    assert base64.b64decode(data.group(1)) == m.screen.read_bytes()  # type: ignore[union-attr]
    assert "line &lt;1&gt;\na &amp; b" in block
    assert 'class="vmtest-console-log" href="../out/test_x/web-console.log"' in block
    assert 'class="vmtest-journal" href="../out/test_x/web-journal.txt"' in block
    assert "<video" not in block


def test_machine_without_screen_or_journal_says_why(tmp_path: Path) -> None:
    m = MachineReport("box", "stopped", [], problems=["(no journal: the machine is stopped)"])
    block = machine_html(m, None)
    assert "vmtest-screen" not in block and "vmtest-journal" not in block
    assert "(no output)" in block and "(no journal: the machine is stopped)" in block


def test_section_has_timeline_and_videos(tmp_path: Path) -> None:
    m = _machine(tmp_path)
    video = tmp_path / "out" / "test_x" / "web-screen.mp4"
    other = tmp_path / "out" / "test_x" / "gone-screen.mp4"
    block = section_html([m], tmp_path / "report", "<svg id='t'></svg>", {"web": video, "gone": other})
    assert block.index("<svg id='t'>") < block.index('data-machine="web"')
    assert '<video class="vmtest-video" controls preload="metadata" style="max-width:100%" ' in block
    assert 'src="../out/test_x/web-screen.mp4"' in block
    # a machine without a failure block (a passed test) still gets its video
    assert 'data-machine="gone"' in block and 'src="../out/test_x/gone-screen.mp4"' in block
