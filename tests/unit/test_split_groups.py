"""pytest-split groups keep a module's or class's shared machines in one group (vmtest.plugin.split)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from vmtest.cli.collect import collect_configs

MODULE = textwrap.dedent(
    """
    import pytest
    from vmtest import MachineConfig

    pytestmark = pytest.mark.vmtest(nodes={"machine": MachineConfig()}, scope="module")

    {tests}
    """
)
FUNCTION = textwrap.dedent(
    """
    import pytest
    from vmtest import MachineConfig

    @pytest.mark.vmtest(nodes={"machine": MachineConfig()})
    def test_alone(machine):
        pass
    """
)
CLASS = textwrap.dedent(
    """
    import pytest
    from vmtest import MachineConfig

    @pytest.mark.vmtest(nodes={"machine": MachineConfig()}, scope="class")
    class TestShared:
    {tests}

    @pytest.mark.vmtest(nodes={"machine": MachineConfig()})
    def test_z_after(machine):
        pass
    """
)


def make_tests(n: int) -> str:
    return "\n".join(f"def test_{i}(machine):\n    pass\n" for i in range(n))


def groups(path: Path, splits: int) -> list[list[str]]:
    out = []
    for group in range(1, splits + 1):
        found = collect_configs([str(path)], ["--splits", str(splits), "--group", str(group), "-p", "no:randomly"])
        out.append(sorted({user.rsplit("::", 1)[0].split("/")[-1] for user, _ in found}))
    return out


def test_a_module_scoped_suite_is_not_cut_between_groups(tmp_path: Path) -> None:
    (tmp_path / "test_fn.py").write_text(FUNCTION)
    (tmp_path / "test_mod.py").write_text(MODULE.replace("{tests}", make_tests(5)))
    got = groups(tmp_path, 2)
    everything = sorted(t for g in got for t in g)
    assert everything == sorted(["test_fn.py::test_alone", *(f"test_mod.py::test_{i}" for i in range(5))])
    holders = [i for i, g in enumerate(got) if any(t.startswith("test_mod.py") for t in g)]
    assert len(holders) == 1, got  # pytest-split alone puts test_2..4 into group 2 (3 + 3 tests)


def test_a_class_scoped_suite_is_not_cut_between_groups(tmp_path: Path) -> None:
    methods = "\n".join(f"    def test_{i}(self, machine):\n        pass\n" for i in range(4))
    (tmp_path / "test_cls.py").write_text(CLASS.replace("{tests}", methods))
    (tmp_path / "test_fn_other.py").write_text(FUNCTION)  # one basename per file in this process's sys.modules
    got = groups(tmp_path, 3)
    everything = [t for g in got for t in g]
    assert len(everything) == len(set(everything)) == 6
    holders = [i for i, g in enumerate(got) if any("TestShared" in t for t in g)]
    assert len(holders) == 1, got
