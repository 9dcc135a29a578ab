"""The pure parts of the debugging aids: --vm-interactive's selection check and namespace, the debug hook's
ways to continue, the keep report's commands."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmtest.config.settings import Settings
from vmtest.plugin import debughook, interactive
from vmtest.plugin.keep import report
from vmtest.vm.keep import Kept


def test_interactive_needs_exactly_one_test() -> None:
    with pytest.raises(pytest.UsageError, match="exactly one test, got 0"):
        interactive.check_selection([])
    items = [SimpleNamespace(nodeid=f"t.py::test_{i}") for i in range(2)]
    with pytest.raises(pytest.UsageError, match=r"got 2 \(t.py::test_0, t.py::test_1\)"):
        interactive.check_selection(items)  # type: ignore[arg-type]


def test_interactive_namespace_binds_nodes_vms_and_globals() -> None:
    driver = SimpleNamespace(
        machines={"server": "S", "client": "C"},
        start_all="sa",
        join_all="ja",
        subtest="st",
        retry="r",
        polling_condition="pc",
    )
    item = SimpleNamespace(funcargs={"server": "S", "tmp_path": "T", "_vmtest_network": driver})
    names = interactive.namespace(item, driver)  # type: ignore[arg-type]
    assert names["server"] == "S" and names["client"] == "C" and names["vms"] is driver
    assert names["start_all"] == "sa" and names["tmp_path"] == "T" and "_vmtest_network" not in names


class _Config:
    class pluginmanager:  # noqa: N801 - mimics pytest.Config.pluginmanager
        @staticmethod
        def getplugin(name: str) -> None:
            return None


def test_debug_hook_continues_when_the_file_appears(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timer = threading.Timer(0.6, (tmp_path / "continue").touch)
    timer.start()
    start = time.monotonic()
    assert debughook.pause(_Config(), "t.py::x", [], tmp_path / "continue") == "file"  # type: ignore[arg-type]
    assert time.monotonic() - start >= 0.5 and not (tmp_path / "continue").exists()


def test_debug_hook_continues_on_sigusr1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done: list[str] = []
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    timer.start()
    done.append(debughook.pause(_Config(), "t.py::x", [], tmp_path / "continue"))  # type: ignore[arg-type]
    assert done == ["signal"]
    out = capsys.readouterr().out
    assert "paused with its machines running" in out and f"kill -USR1 {os.getpid()}" in out


def test_keep_report_names_attach_and_kill_per_node() -> None:
    run = Settings.resolve({}, os.environ, lambda key: None)
    kept = [Kept("web-12", "web", "t.py::x", 12, "/s/attach.sock", "/s", time.time() + 60)]
    text = report(kept, run)
    assert "vmtest attach web-12" in text and "vmtest kill web-12" in text and "kept running for 30m" in text
    assert report([], run) == ""
