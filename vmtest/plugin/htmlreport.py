"""The failure report in pytest-html's HTML report (``pytest --html=report.html``).

When the pytest-html plugin is active, a failed VM test's row gets one HTML
block per machine: its last screenshot inline (a ``data:`` URI, so the
report shows it wherever it is opened), its console tail, and links to the
full console log, the journal and the screen video (relative to the report,
so the report and ``vmtest-output/`` can move together). The test's timeline
picture (:mod:`vmtest.plugin.timeline`) comes first. Pure functions build
the HTML; :func:`add_extras` hands it to pytest-html.
"""

from __future__ import annotations

import base64
import html
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vmtest.plugin.report import CONSOLE_LINES, MachineReport


def report_dir(config: pytest.Config) -> Path | None:
    """The directory of the HTML report this run writes, or None when pytest-html is not writing one."""
    if not config.pluginmanager.hasplugin("html"):
        return None
    path = getattr(config.option, "htmlpath", None)
    return Path(path).absolute().parent if path else None


def link(path: Path, base: Path | None) -> str:
    """``path`` as seen from the report in ``base``: relative when it can be, else a file:// URI."""
    target = path.absolute()
    if base is not None:
        try:
            return Path(os.path.relpath(target, base)).as_posix()
        except ValueError:  # another drive (not on Linux, but relpath may say so)
            pass
    return target.as_uri()


def _anchor(path: Path, base: Path | None, label: str, cls: str) -> str:
    return f'<a class="{cls}" href="{html.escape(link(path, base))}">{html.escape(label)}</a>'


def _video(video: Path, base: Path | None) -> str:
    return (
        f'<video class="vmtest-video" controls preload="metadata" style="max-width:100%" '
        f'src="{html.escape(link(video, base))}"></video>'
    )


def video_html(name: str, video: Path, base: Path | None) -> str:
    """The screen video of a machine that has no failure block (a test that passed)."""
    escaped = html.escape(name)
    return (
        f'<div class="vmtest-machine" data-machine="{escaped}"><h4 style="margin:0.3em 0">{escaped}</h4>'
        f"<p>{_anchor(video, base, 'screen video', 'vmtest-video-link')}</p>{_video(video, base)}</div>"
    )


def machine_html(m: MachineReport, base: Path | None, video: Path | None = None) -> str:
    """One machine's block: name and state, the screenshot, the console tail and the links."""
    name = html.escape(m.name)
    parts = [f'<div class="vmtest-machine" data-machine="{name}" style="margin:0.5em 0 1em 0">']
    parts.append(f'<h4 style="margin:0.3em 0">{name} <small>(the machine is {html.escape(m.state)})</small></h4>')
    if m.screen is not None and m.screen.exists():
        data = base64.b64encode(m.screen.read_bytes()).decode()
        parts.append(
            f'<img class="vmtest-screen" alt="{name}: the last screenshot" title="{name}: the last screenshot" '
            f'style="max-width:100%;border:1px solid #888" src="data:image/png;base64,{data}"/>'
        )
    links = []
    if m.console is not None:
        links.append(_anchor(m.console, base, "full console log", "vmtest-console-log"))
    if m.journal is not None:
        links.append(_anchor(m.journal, base, "journal", "vmtest-journal"))
    if m.screen is not None:
        links.append(_anchor(m.screen, base, "screenshot", "vmtest-screenshot"))
    if video is not None:
        links.append(_anchor(video, base, "screen video", "vmtest-video-link"))
    if links:
        parts.append("<p>" + " | ".join(links) + "</p>")
    for problem in m.problems:
        parts.append(f"<p><em>{html.escape(problem)}</em></p>")
    if video is not None:
        parts.append(_video(video, base))
    tail = "\n".join(m.tail) or "(no output)"
    parts.append(f"<p>last {CONSOLE_LINES} console lines:</p>")
    parts.append(
        '<pre class="vmtest-console" style="white-space:pre-wrap;background:#f4f4f4;padding:0.5em">'
        f"{html.escape(tail)}</pre>"
    )
    parts.append("</div>")
    return "\n".join(parts)


def section_html(
    machines: Sequence[MachineReport],
    base: Path | None,
    timeline_svg: str | None = None,
    videos: Mapping[str, Path] | None = None,
) -> str:
    """The whole vmtest block of a failed test's row."""
    videos = videos or {}
    title = "vmtest machines" if machines else "vmtest screen videos"
    parts = [f'<div class="vmtest-report"><h3 style="margin:0.3em 0">{title}</h3>']
    if timeline_svg:
        parts.append(f'<div class="vmtest-timeline">{timeline_svg}</div>')
    parts.extend(machine_html(m, base, videos.get(m.name)) for m in machines)
    shown = {m.name for m in machines}
    parts.extend(video_html(name, video, base) for name, video in sorted(videos.items()) if name not in shown)
    parts.append("</div>")
    return "\n".join(parts)


def add_extras(report: pytest.TestReport, content: str) -> None:
    """Append an HTML block to the report's pytest-html extras."""
    extras = importlib.import_module("pytest_html.extras")
    carrier: Any = report  # pytest-html reads the attribute ``extras`` of the report
    carrier.extras = [*getattr(report, "extras", []), extras.html(content)]
