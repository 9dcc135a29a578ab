"""The ``@pytest.mark.vmtest(nodes={...}, scope=...)`` marker: reading and checking its arguments."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError

SCOPES = ("function", "class", "module")


def marker_args(marker: pytest.Mark) -> tuple[dict[str, MachineConfig], str]:
    """(nodes, scope) of a vmtest marker, or ConfigError naming what is wrong."""
    nodes = marker.kwargs.get("nodes", marker.args[0] if marker.args else None)
    if not isinstance(nodes, dict) or not nodes:
        raise ConfigError("vmtest(nodes=...)", nodes, "expected a non-empty dict {name: MachineConfig}")
    scope = marker.kwargs.get("scope", "function")
    if scope not in SCOPES:
        raise ConfigError("vmtest(scope=...)", scope, "unknown scope", "use 'function', 'class' or 'module'")
    return nodes, scope


def node_names(marks: Iterable[pytest.Mark]) -> list[str]:
    """The node names of the first vmtest mark among ``marks`` (the closest one), or []."""
    for mark in marks:
        if mark.name == "vmtest":
            nodes = mark.kwargs.get("nodes", mark.args[0] if mark.args else None)
            return [n for n in nodes if isinstance(n, str)] if isinstance(nodes, dict) else []
    return []
