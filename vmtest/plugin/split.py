"""Sharding with pytest-split: machines shared by a module or class stay in one group.

pytest-split (``pytest --splits N --group i``) divides the collected tests
by their recorded durations, test by test. A module- or class-scoped vmtest
marker boots its machines once for all tests of that module/class; split
across groups, each group would boot them again. This hook wraps
pytest-split's selection: every such module/class goes, whole, to the group
that holds its first test (each group computes the same split, so every
test still runs in exactly one group). Without ``--splits`` nothing changes.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from vmtest.plugin.marker import SCOPES

SPLIT_PLUGIN = "pytestsplitplugin"  # the name pytest-split registers its selection under


def scope_unit(item: pytest.Item) -> str | None:
    """The node id of the module or class whose machines ``item`` shares, or None (function scope)."""
    mark = item.get_closest_marker("vmtest")
    scope = mark.kwargs.get("scope", "function") if mark is not None else "function"
    if scope not in SCOPES or scope == "function":
        return None
    node = item.getparent(pytest.Class if scope == "class" else pytest.Module)
    return node.nodeid if node is not None else None


def keep_units_together(before: list[pytest.Item], selected: list[pytest.Item]) -> list[pytest.Item]:
    """``selected`` (a group of ``before``) with every shared-machine unit moved, whole, to the group of its
    first test: in this group if that test is selected here, else out of it (pure; keeps the order)."""
    chosen = {id(i) for i in selected}
    first: dict[str, bool] = {}
    for item in before:
        unit = scope_unit(item)
        if unit is not None and unit not in first:
            first[unit] = id(item) in chosen

    def keep(item: pytest.Item) -> bool:
        unit = scope_unit(item)
        return first[unit] if unit is not None else id(item) in chosen

    return [item for item in before if keep(item)]


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    if not config.pluginmanager.has_plugin(SPLIT_PLUGIN):
        yield
        return
    before = list(items)
    yield
    regrouped = keep_units_together(before, items)
    if [id(i) for i in regrouped] != [id(i) for i in items]:
        kept = {id(i) for i in regrouped}
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept])
        items[:] = regrouped
