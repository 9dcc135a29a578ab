"""Each test's timeline (:mod:`vmtest.core.timeline`): recorded from its setup to its teardown; for a
failed VM test, drawn as text in the terminal report and as an SVG picture (``timeline.svg`` in the
test's output directory, and in the pytest-html report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtest.core import timeline

TIMELINE_KEY = pytest.StashKey[timeline.Timeline]()


def begin(item: pytest.Item) -> None:
    item.stash[TIMELINE_KEY] = timeline.start()


def end(item: pytest.Item) -> timeline.Timeline | None:
    """Stop recording the test's timeline (idempotent); the timeline, if one was recorded."""
    found = item.stash.get(TIMELINE_KEY, None)
    if found is not None:
        timeline.stop(found)
    return found


def failure_text(call: pytest.CallInfo[None]) -> str:
    if call.excinfo is None:
        return "FAILED"
    first = call.excinfo.exconly().strip().splitlines()[0] if call.excinfo.exconly().strip() else ""
    return f"FAILED: {first[:150]}" if first else "FAILED"


@dataclass(frozen=True)
class Drawn:
    text: str
    svg: str
    svg_path: Path


def close_for_failure(item: pytest.Item, call: pytest.CallInfo[None], out: Path) -> Drawn | None:
    """Mark the failure, stop recording (the report's own commands stay off the timeline), and draw it."""
    found = end(item)
    if found is None:
        return None
    found.mark("test", failure_text(call))
    text = timeline.render_text(found)
    svg = timeline.render_svg(found)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.txt").write_text(text + "\n")
    svg_path = out / "timeline.svg"
    svg_path.write_text(svg)
    return Drawn(text, svg, svg_path)
