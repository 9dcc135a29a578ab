"""The vmtest marker's arguments: read and checked, each mistake a ConfigError naming the argument (pure)."""

from __future__ import annotations

import pytest

from vmtest import ConfigError, MachineConfig
from vmtest.plugin.marker import global_timeout, marker_args, settings_only, snapshots

NODES = {"web": MachineConfig()}


def mark(*args: object, **kwargs: object) -> pytest.Mark:
    return pytest.mark.vmtest(*args, **kwargs).mark


def test_nodes_and_scope() -> None:
    assert marker_args(mark(nodes=NODES)) == (NODES, "function")
    assert marker_args(mark(NODES, scope="module")) == (NODES, "module")


@pytest.mark.parametrize(
    ("kwargs", "argument", "says"),
    [
        ({"nodes": {}}, "vmtest(nodes=...)", "non-empty dict"),
        ({"nodes": NODES, "scope": "session"}, "vmtest(scope=...)", "unknown scope"),
        ({"nodes": NODES, "timeout": 5}, "vmtest(timeout=...)", "takes nodes, scope, snapshots and global_timeout"),
    ],
)
def test_a_wrong_argument_is_named(kwargs: dict[str, object], argument: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"vmtest\(") as info:
        marker_args(mark(**kwargs))
    assert argument in str(info.value) and says in str(info.value)


def test_snapshots_default_on_and_only_a_bool() -> None:
    assert snapshots(mark(nodes=NODES)) is True
    assert snapshots(mark(nodes=NODES, snapshots=False)) is False
    with pytest.raises(ConfigError, match="expected True or False"):
        snapshots(mark(nodes=NODES, snapshots="no"))


def test_global_timeout_is_the_tests_own_or_none() -> None:
    assert global_timeout(None) is None
    assert global_timeout(mark(nodes=NODES)) is None
    assert global_timeout(mark(nodes=NODES, global_timeout=25)) == 25.0
    assert global_timeout(mark(global_timeout=0.5)) == 0.5  # a vm_factory test: the marker without nodes
    for bad in (0, -3, "60", True):
        with pytest.raises(ConfigError, match=r"vmtest\(global_timeout=...\).*seconds > 0"):
            global_timeout(mark(nodes=NODES, global_timeout=bad))


def test_a_marker_with_settings_alone_is_a_vm_factory_tests_but_an_empty_one_is_an_error() -> None:
    assert settings_only(mark(global_timeout=30))
    assert not settings_only(mark(nodes=NODES, global_timeout=30)) and not settings_only(mark(NODES))
    assert not settings_only(mark())  # nodes forgotten: marker_args names them
    with pytest.raises(ConfigError, match=r"vmtest\(nodes=...\).*non-empty dict"):
        marker_args(mark())
