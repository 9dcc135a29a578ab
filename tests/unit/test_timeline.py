"""The event recorder behind a failed test's timeline, and its two drawings (text and SVG)."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET

import pytest

from vmtest.core import timeline
from vmtest.core.log import nested, span


def test_nested_sections_become_spans_of_the_recorded_timeline() -> None:
    recorded = timeline.start()
    try:
        web = logging.getLogger("vmtest.web")
        with nested(web, "web: starting"):
            with nested(web, "web: waiting for the backdoor shell"):
                pass
        with pytest.raises(RuntimeError), nested(logging.getLogger("vmtest.driver"), "subtest: x"):
            raise RuntimeError("boom")
        with nested(logging.getLogger("vmtest.image"), "kernel x", level=logging.DEBUG):
            pass  # a detail: not on the timeline
        with span(web, "execute: true"):
            pass

        def in_a_thread() -> None:
            with nested(web, "web: from a thread"):
                pass

        other = threading.Thread(target=in_a_thread)
        other.start()
        other.join()
    finally:
        timeline.stop(recorded)
    with nested(logging.getLogger("vmtest.web"), "web: after the recording"):
        pass
    got = [(s.lane, s.what, s.depth, s.ok) for s in recorded.spans]
    assert got == [
        ("web", "starting", 0, True),
        ("web", "waiting for the backdoor shell", 1, True),
        ("vms", "subtest: x", 0, False),
        ("web", "execute: true", 0, True),
        ("web", "from a thread", 0, True),  # every thread records into the test's timeline
    ]
    assert recorded.lanes() == ["web", "vms"]


def _example() -> timeline.Timeline:
    t = timeline.Timeline(start=100.0)
    t.spans = [
        timeline.Span("web", "starting", 100.0, 0, 112.5, True),
        timeline.Span("web", "waiting for the backdoor shell", 101.0, 1, 112.0, True),
        timeline.Span("db", "must succeed: curl --version", 113.0, 0, 113.5, False),
        timeline.Span("db", "waiting for unit <x>.service", 114.0, 0, None, None),
    ]
    t.mark("test", "FAILED: AssertionError: assert False", 115.0)
    return t


def test_text_timeline_lists_every_span_and_the_failure_in_time_order() -> None:
    text = timeline.render_text(_example(), now=116.0)
    lines = text.splitlines()
    assert lines[0].split() == ["began", "took", "who", "what"]
    assert lines[1] == "    0.00s   12.50s  web   starting"
    assert lines[2] == "    1.00s   11.00s  web     waiting for the backdoor shell"
    assert lines[3] == "   13.00s    0.50s  db    must succeed: curl --version  FAILED"
    assert lines[4] == "   14.00s    2.00s  db    waiting for unit <x>.service  (still going)"
    assert lines[5] == "   15.00s           test  >>> FAILED: AssertionError: assert False"
    assert timeline.render_text(_example(), now=116.0, limit=2).splitlines()[1] == "   ... 3 earlier events"


def test_svg_timeline_is_well_formed_with_a_bar_per_span_and_a_failure_line() -> None:
    svg = timeline.render_svg(_example(), now=116.0, width=800)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "vmtest-span"]
    assert len(bars) == 4
    colors = {b.findtext(f"{ns}title"): b.get("fill") for b in bars}
    assert colors["db: must succeed: curl --version (13.00s +0.50s)"] == "#d9534f"
    assert colors["db: waiting for unit <x>.service (14.00s +2.00s)"] == "#f0ad4e"
    assert colors["web: starting (0.00s +12.50s)"] == "#5cb85c"
    (mark,) = [m for m in root.iter(f"{ns}line") if m.get("class") == "vmtest-mark"]
    # 15 s of a 16 s test, on a plot from x=110 to x=790
    assert abs(float(mark.get("x1", "0")) - (110 + 15 / 16 * 680)) < 0.2
    labels = [t.text for t in root.iter(f"{ns}text")]
    assert {"web", "db", "test"} <= set(labels)
    assert "FAILED: AssertionError: assert False" in labels


def test_empty_timeline_draws() -> None:
    assert timeline.render_text(timeline.Timeline()) == "(no events)"
    ET.fromstring(timeline.render_svg(timeline.Timeline()))
