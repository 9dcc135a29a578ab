"""Node names as fixtures (runs pytest on small test files; no machine is started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = """
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"alpha": MachineConfig(), "beta": MachineConfig()})
def test_two(alpha, beta, vms):
    assert vms.machines == {"alpha": alpha, "beta": beta}
    assert alpha.name == "alpha" and beta.name == "beta"
    assert alpha.state.value == "created"   # nothing boots until used

@pytest.mark.vmtest(nodes={"solo": MachineConfig()})
def test_single(machine, solo):
    assert machine is solo

@pytest.mark.vmtest(nodes={"alpha": MachineConfig()})
def test_undeclared(beta):
    pass

def test_without_marker(alpha):
    pass
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_nodes.py").write_text(TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=false", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ids_have_no_suffix_and_fixtures_resolve(tmp_path: Path) -> None:
    out = _pytest(tmp_path, "-q", "--collect-only")
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids == [
        "test_nodes.py::test_two",
        "test_nodes.py::test_single",
        "test_nodes.py::test_undeclared",
        "test_nodes.py::test_without_marker",
    ], out.stdout
    run = _pytest(tmp_path, "-q", "-rA")
    assert "PASSED test_nodes.py::test_two" in run.stdout and "PASSED test_nodes.py::test_single" in run.stdout
    assert "declares no such node" in run.stdout  # test_undeclared asks for beta, its marker has only alpha
    assert "ERROR test_nodes.py::test_without_marker" in run.stdout


def test_fixtures_listing_names_the_nodes(tmp_path: Path) -> None:
    out = _pytest(tmp_path, "--fixtures", "-q")
    lines = out.stdout.splitlines()
    for name in ("alpha", "beta", "solo"):
        at = next(i for i, line in enumerate(lines) if line.startswith(name))
        assert "vmtest node" in " ".join(lines[at : at + 3]), out.stdout
