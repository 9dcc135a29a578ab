"""The ``@pytest.mark.vmtest(nodes={...}, scope=..., snapshots=..., global_timeout=...)`` marker: reading
and checking its arguments."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError

SCOPES = ("function", "class", "module")


def marker_args(marker: pytest.Mark) -> tuple[dict[str, MachineConfig], str]:
    """(nodes, scope) of a vmtest marker, or ConfigError naming what is wrong (see :func:`snapshots`)."""
    nodes = marker.kwargs.get("nodes", marker.args[0] if marker.args else None)
    if not isinstance(nodes, dict) or not nodes:
        raise ConfigError("vmtest(nodes=...)", nodes, "expected a non-empty dict {name: MachineConfig}")
    scope = marker.kwargs.get("scope", "function")
    if scope not in SCOPES:
        raise ConfigError("vmtest(scope=...)", scope, "unknown scope", "use 'function', 'class' or 'module'")
    unknown = set(marker.kwargs) - {"nodes", "scope", "snapshots", "global_timeout"}
    if unknown:
        raise ConfigError(
            f"vmtest({sorted(unknown)[0]}=...)",
            marker.kwargs[sorted(unknown)[0]],
            "unknown marker argument",
            "the vmtest marker takes nodes, scope, snapshots and global_timeout",
        )
    return nodes, scope


def snapshots(marker: pytest.Mark) -> bool:
    """``snapshots=False`` in the marker: the test needs real boots (boot messages, early console)."""
    value = marker.kwargs.get("snapshots", True)
    if not isinstance(value, bool):
        raise ConfigError(
            "vmtest(snapshots=...)",
            value,
            "expected True or False",
            "snapshots=False makes every machine of the test boot for real",
        )
    return value


def settings_only(marker: pytest.Mark) -> bool:
    """A marker that gives settings (``global_timeout``, ``snapshots``) and no nodes: a ``vm_factory`` test's.
    An empty marker is not: it is a marker whose nodes were forgotten (:func:`marker_args` says so)."""
    return not marker.args and "nodes" not in marker.kwargs and bool(marker.kwargs)


def global_timeout(marker: pytest.Mark | None) -> float | None:
    """``global_timeout=SECONDS`` in the marker: this test's own global timeout (None: the run's, as NixOS's
    per-test ``globalTimeout``)."""
    value = None if marker is None else marker.kwargs.get("global_timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            "vmtest(global_timeout=...)",
            value,
            "expected a number of seconds > 0",
            "e.g. global_timeout=600 kills the test's machines 10 minutes after they are set up",
        )
    return float(value)


def node_names(marks: Iterable[pytest.Mark]) -> list[str]:
    """The node names of the first vmtest mark among ``marks`` (the closest one), or []."""
    for mark in marks:
        if mark.name == "vmtest":
            nodes = mark.kwargs.get("nodes", mark.args[0] if mark.args else None)
            return [n for n in nodes if isinstance(n, str)] if isinstance(nodes, dict) else []
    return []
