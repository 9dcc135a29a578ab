"""The machine configurations a selection of tests uses, found by pytest's own collection.

``vmtest cache key/export PATHS...`` runs pytest's collection in this process
(``--collect-only``, nothing runs, no VM starts) with a small plugin that
reads the closest ``vmtest`` marker of every collected test. The selection
is pytest's: paths, ``-k``, ``-m``, conftest files, the project's ini file
(and pytest-split's ``--splits/--group`` if given). Machines a test creates
at run time (``vm_factory``, ``vms.create_machine``) are not markers and are
not seen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Sequence

import pytest

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError


class _Collector:
    """A pytest plugin object: the vmtest nodes of every collected test."""

    def __init__(self) -> None:
        self.found: list[tuple[str, MachineConfig]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:  # after every plugin's selection (-k, -m, pytest-split groups)
            mark = item.get_closest_marker("vmtest")
            if mark is None:
                continue
            nodes = mark.kwargs.get("nodes", mark.args[0] if mark.args else None)
            if not isinstance(nodes, dict):
                continue  # the plugin reports a bad marker when the test runs
            for name, config in nodes.items():
                if isinstance(config, MachineConfig):
                    self.found.append((f"{item.nodeid}::{name}", config))


def collect_configs(paths: Sequence[str], pytest_args: Sequence[str] = ()) -> list[tuple[str, MachineConfig]]:
    """(``nodeid::node``, config) for every vmtest node of the tests pytest collects from ``paths``."""
    collector = _Collector()
    out = io.StringIO()
    argv = [*paths, *pytest_args, "--collect-only", "-q", "-p", "no:cacheprovider"]
    if importlib.util.find_spec("xdist") is not None:
        argv += ["-n", "0"]  # collect here, not in xdist workers (an ini's addopts may say -n)
    with contextlib.redirect_stdout(out):
        status = pytest.main(argv, plugins=[collector])
    if status not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        tail = "\n".join(out.getvalue().splitlines()[-20:])
        raise ConfigError(
            "PATHS",
            " ".join([*paths, *pytest_args]),
            f"pytest's collection failed with exit status {int(status)}:\n{tail}",
            "run 'pytest --collect-only' on the same paths to see the whole error",
        )
    return collector.found
