"""Which machine did what when: the spans of a test, for its failure report.

Every timed log section (:func:`vmtest.core.log.nested`) is also a
:class:`Span` of the timelines being recorded (one per running test: the
plugin starts one when a test's setup begins and stops it after its
teardown). A span's lane is the part that logged it: a machine's name,
``vms`` for the network, ``images`` for image builds. :func:`render_text`
and :func:`render_svg` draw a timeline (pure functions).
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field

LANES = {"driver": "vms", "image": "images", "": "vmtest"}


@dataclass
class Span:
    lane: str
    what: str
    start: float  # time.monotonic()
    depth: int
    end: float | None = None  # None: still going when the timeline was drawn
    ok: bool | None = None


@dataclass
class Mark:
    """A moment: the failure."""

    lane: str
    what: str
    at: float


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, lane: str, what: str, depth: int) -> Span:
        span = Span(lane, what, time.monotonic(), depth)
        with self._lock:
            self.spans.append(span)
        return span

    def mark(self, lane: str, what: str, at: float | None = None) -> None:
        with self._lock:
            self.marks.append(Mark(lane, what, time.monotonic() if at is None else at))

    def lanes(self) -> list[str]:
        """Lanes in the order they first appear."""
        seen: dict[str, None] = {}
        for span in sorted(self.spans, key=lambda s: s.start):
            seen.setdefault(span.lane)
        for m in self.marks:
            seen.setdefault(m.lane)
        return list(seen)


_active: list[Timeline] = []
_active_lock = threading.Lock()


def start() -> Timeline:
    """Begin recording a timeline (spans from every thread go to it until :func:`stop`)."""
    timeline = Timeline()
    with _active_lock:
        _active.append(timeline)
    return timeline


def stop(timeline: Timeline) -> None:
    with _active_lock:
        if timeline in _active:
            _active.remove(timeline)


def lane_of(logger_name: str) -> str:
    """``vmtest.web`` -> ``web``; ``vmtest.driver`` -> ``vms``."""
    name = logger_name.removeprefix("vmtest").removeprefix(".")
    return LANES.get(name, name)


def begin(logger_name: str, what: str, depth: int) -> list[tuple[Timeline, Span]]:
    """A span in every timeline being recorded (none: nothing to do)."""
    with _active_lock:
        timelines = list(_active)
    if not timelines:
        return []
    lane = lane_of(logger_name)
    what = what.removeprefix(f"{lane}: ")
    return [(t, t.begin(lane, what, depth)) for t in timelines]


def finish(spans: list[tuple[Timeline, Span]], ok: bool) -> None:
    now = time.monotonic()
    for _, span in spans:
        span.end, span.ok = now, ok


# -- drawing ------------------------------------------------------------------------------------

MAX_TEXT_SPANS = 80


def render_text(timeline: Timeline, now: float | None = None, limit: int = MAX_TEXT_SPANS) -> str:
    """One line per span and mark, in time order: seconds since the test began, duration, lane, what."""
    now = time.monotonic() if now is None else now
    rows: list[tuple[float, str]] = []
    width = max((len(lane) for lane in timeline.lanes()), default=4)
    for s in timeline.spans:
        took = f"{(s.end if s.end is not None else now) - s.start:7.2f}s"
        outcome = "" if s.ok else "  FAILED" if s.ok is False else "  (still going)"
        rows.append(
            (s.start, f"{s.start - timeline.start:8.2f}s {took}  {s.lane:<{width}}  {'  ' * s.depth}{s.what}{outcome}")
        )
    for m in timeline.marks:
        rows.append((m.at, f"{m.at - timeline.start:8.2f}s {'':8}  {m.lane:<{width}}  >>> {m.what}"))
    rows.sort(key=lambda r: r[0])
    lines = [line for _, line in rows]
    if len(lines) > limit:
        lines = [f"   ... {len(lines) - limit} earlier events", *lines[-limit:]]
    head = f"{'began':>9} {'took':>8}  {'who':<{width}}  what"
    return "\n".join([head, *lines]) if rows else "(no events)"


def _tick_step(total: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800):
        if total / step <= 12:
            return step
    return 3600


def render_svg(timeline: Timeline, now: float | None = None, width: int = 960) -> str:
    """The timeline as an SVG picture: a row per lane, a bar per span (green: done, red: failed, orange:
    still going), nested spans thinner inside their parent, a red line at each mark."""
    now = time.monotonic() if now is None else now
    lanes = timeline.lanes()
    ends = [s.end or now for s in timeline.spans] + [m.at for m in timeline.marks] + [timeline.start + 1]
    total = max(ends) - timeline.start
    label_w, row_h, top = 110, 34, 40
    plot_w = width - label_w - 10
    height = top + row_h * max(len(lanes), 1) + 26

    def x(t: float) -> float:
        return label_w + (t - timeline.start) / total * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="vmtest-timeline-svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="4" y="14" font-weight="bold">timeline (seconds since the test began; {total:.1f}s)</text>',
    ]
    step = _tick_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        tx = x(timeline.start + tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{height - 20}" stroke="#ddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">{tick:g}</text>')
        tick += step
    for i, lane in enumerate(lanes):
        y = top + i * row_h
        out.append(f'<text x="4" y="{y + row_h / 2 + 4:.0f}">{html.escape(lane)}</text>')
        out.append(f'<line x1="{label_w}" y1="{y + row_h}" x2="{width - 10}" y2="{y + row_h}" stroke="#eee"/>')
    for s in sorted(timeline.spans, key=lambda s: s.depth):
        y = top + lanes.index(s.lane) * row_h
        depth = min(s.depth, 3)
        inset = 3 + depth * 5
        x0, x1 = x(s.start), x(s.end if s.end is not None else now)
        w = max(x1 - x0, 1.5)
        color = ("#5cb85c", "#8fd18f", "#b9e3b9", "#dcf2dc")[depth]
        if s.ok is False:
            color = ("#d9534f", "#e57c79", "#efa8a6", "#f7d3d2")[depth]
        elif s.ok is None:
            color = "#f0ad4e"
        took = (s.end if s.end is not None else now) - s.start
        title = html.escape(f"{s.lane}: {s.what} ({s.start - timeline.start:.2f}s +{took:.2f}s)")
        out.append(
            f'<rect class="vmtest-span" x="{x0:.1f}" y="{y + inset}" width="{w:.1f}" height="{row_h - 2 * inset}" '
            f'fill="{color}" stroke="#333" stroke-width="0.3"><title>{title}</title></rect>'
        )
        if depth == 0 and w > 40:
            chars = int(w / 6.2)
            label = s.what if len(s.what) <= chars else s.what[: max(chars - 1, 1)] + "…"
            out.append(
                f'<text x="{x0 + 3:.1f}" y="{y + row_h / 2 + 4:.0f}" fill="#000" pointer-events="none">'
                f"{html.escape(label)}</text>"
            )
    for m in timeline.marks:
        mx = x(m.at)
        out.append(
            f'<line class="vmtest-mark" x1="{mx:.1f}" y1="{top - 4}" x2="{mx:.1f}" y2="{height - 20}" stroke="#c00" '
            f'stroke-width="2"><title>{html.escape(f"{m.lane}: {m.what}")}</title></line>'
        )
        anchor = "end" if mx > width / 2 else "start"
        label = m.what if len(m.what) <= 70 else m.what[:69] + "…"
        out.append(
            f'<text x="{mx + (-4 if anchor == "end" else 4):.1f}" y="{top - 6}" fill="#c00" text-anchor="{anchor}">'
            f"{html.escape(label)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
