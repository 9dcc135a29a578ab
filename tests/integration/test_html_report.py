"""pytest-html's report of a failed VM test, opened in a real headless browser (Chromium).

The demo failure (``examples/test_failing.py``) runs with ``--html``; the report is then rendered by
Chromium (its JavaScript builds the result rows) and a script added to a copy of the report writes what
the browser laid out into data attributes, which ``--dump-dom`` prints: the screenshot's natural and
rendered size, the console tail's text and the timeline picture.
"""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.integration

PROBE = """
<script>
window.addEventListener('load', () => setTimeout(() => {
  const root = document.documentElement.dataset;
  const img = document.querySelector('.vmtest-machine[data-machine="web"] img.vmtest-screen');
  if (img) {
    const box = img.getBoundingClientRect();
    root.vmtestImg = `${img.naturalWidth}x${img.naturalHeight} ${Math.round(box.width)}x${Math.round(box.height)}`;
  } else {
    root.vmtestImg = 'none';
  }
  const pre = document.querySelector('.vmtest-machine[data-machine="web"] pre.vmtest-console');
  root.vmtestConsoleHeight = pre ? String(Math.round(pre.getBoundingClientRect().height)) : 'none';
  root.vmtestConsole = pre ? pre.textContent : 'none';
  const svg = document.querySelector('.vmtest-timeline svg.vmtest-timeline-svg');
  const count = (selector) => svg.querySelectorAll(selector).length;
  root.vmtestTimeline = svg
    ? `${Math.round(svg.getBoundingClientRect().width)} ${count('rect.vmtest-span')} ${count('line.vmtest-mark')}`
    : 'none';
  root.vmtestDone = 'yes';
}, 1000));
</script>
"""


def test_html_report_of_the_demo_failure_shows_screenshot_and_console_tail(tmp_path, chromium_dom, run_pytest):
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (it is in vmtest's dev extras)")
    out = tmp_path / "out"
    report = tmp_path / "report" / "report.html"
    proc = run_pytest(
        "examples/test_failing.py::test_wrong_expectation",
        "--run-demo-failures",
        f"--vm-output-dir={out}",
        f"--html={report}",
    )
    text = proc.output
    assert proc.returncode == 1, text[-3000:]
    assert "1 failed" in text, text[-3000:]
    assert report.exists(), text[-3000:]

    probe = report.with_name("probe.html")  # beside the report: its assets/ resolve the same way
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium_dom(probe)
    attrs = dict(re.findall(r' data-vmtest-([a-z-]+)="([^"]*)"', dom))
    assert attrs.get("done") == "yes", dom[:2000]

    # The screenshot is embedded and laid out at a real size (the guest's 1024x768 screen, or the
    # report's width when narrower).
    natural, rendered = attrs["img"].split(" ")
    width, height = (int(v) for v in natural.split("x"))
    shown_w, shown_h = (int(v) for v in rendered.split("x"))
    assert (width, height) == (1024, 768), attrs
    assert shown_w >= 300 and shown_h >= 200, attrs
    assert abs(shown_w / shown_h - width / height) < 0.05, attrs

    # The console tail is on the page and laid out.
    console = html.unescape(attrs["console"])
    assert "demo: about to fail" in console, console
    # (the lines since the test began: after a restore that can be the one line the test printed)
    assert int(attrs["console-height"]) >= 10 * console.count("\n") + 10, attrs

    # The timeline: a text section in the terminal report, a picture on the page (bars, the failure line).
    timeline = text.split("vmtest timeline", 1)[1]
    assert re.search(r"s  web +must succeed: curl --version  FAILED\n", timeline) is None, timeline[:3000]
    assert re.search(r"s  web +must succeed: curl --version\n", timeline), timeline[:3000]  # it ran; the test failed
    assert re.search(r"s +test +>>> FAILED: AssertionError", timeline), timeline[:3000]
    svg_width, bars, marks = (int(v) for v in attrs["timeline"].split())
    assert svg_width >= 900 and bars >= 3 and marks == 1, attrs

    # The links lead to the full console log and the journal.
    links = dict(re.findall(r'class="(vmtest-console-log|vmtest-journal)" href="([^"]+)"', dom))
    assert b"demo: about to fail" in (report.parent / links["vmtest-console-log"]).read_bytes()
    assert "vmtest-backdoor.service" in (report.parent / links["vmtest-journal"]).read_text()
