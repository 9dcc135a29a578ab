"""The suite's own scheduling (the repository's conftest.py): xdist gets the longest modules first."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _root_conftest():
    spec = importlib.util.spec_from_file_location("vmtest_root_conftest", REPO / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_modules_longest_first_tests_in_order_unknown_last() -> None:
    order = _root_conftest().longest_modules_first
    items = [Item(n) for n in ("a.py::t1", "a.py::t2", "b.py::C::t1", "new.py::t", "b.py::C::t2", "c.py::t")]
    seconds = {"a.py": 5, "b.py": 90, "c.py": 30}
    got = [i.nodeid for i in order(items, seconds)]
    assert got == ["b.py::C::t1", "b.py::C::t2", "c.py::t", "a.py::t1", "a.py::t2", "new.py::t"]


def test_the_table_names_modules_that_exist() -> None:
    table = json.loads((REPO / "tests" / "module-seconds.json").read_text())
    assert table and all(isinstance(s, int) and s >= 0 for s in table.values())
    missing = [module for module in table if not (REPO / module).is_file()]
    assert missing == [], f"tests/module-seconds.json names modules that are gone: {missing} (.ci/module-seconds)"
