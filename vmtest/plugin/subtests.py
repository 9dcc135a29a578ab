"""Subtests of VM tests as separate ``--junitxml`` entries.

``vms.subtest(name)`` reports each subtest through pytest's own ``subtests``
support (built into pytest 9): the terminal shows each failing subtest
(``SUBFAILED[name] path::test``) and the test goes on. pytest's JUnit XML
writer puts every subtest report of a test into the test's one ``<testcase>``;
for tests with a ``vmtest`` marker this module gives each subtest a
``<testcase>`` of its own, named ``test[subtest name]``, so CI dashboards count
and show them one by one (nixpkgs issue 147558: only the first failing
subtest was seen). The test's own entry stays, failing with "contains N
failed subtests" when any did.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest


def _subtest_id(report: Any) -> str | None:
    """``nodeid[msg, key=value]`` for the subtest report of a VM test, else None."""
    context = getattr(report, "context", None)
    if context is None or "vmtest" not in getattr(report, "keywords", {}):
        return None
    parts = [context.msg] if context.msg is not None else []
    parts += [f"{k}={v}" for k, v in context.kwargs.items()]
    return f"{report.nodeid}[{', '.join(parts) or 'subtest'}]"


def split_junit_subtests(config: pytest.Config) -> None:
    """Make the session's JUnit XML writer (when ``--junitxml`` is on) open one testcase per subtest."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # a pytest without it: subtests stay in their test's entry
        return
    xml = config.stash.get(xml_key, None)
    if xml is None or not hasattr(xml, "_opentestcase"):
        return
    original = xml._opentestcase

    def opentestcase(report: Any) -> Any:
        name = _subtest_id(report)
        if name is None:
            return original(report)
        renamed = copy.copy(report)
        renamed.nodeid = name
        reporter = xml.node_reporter(renamed)
        reporter.record_testreport(renamed)
        return reporter

    xml._opentestcase = opentestcase  # type: ignore[method-assign]
