"""Selecting and running the examples as users do: -k webserver, and -n 2 (xdist)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dash_k_selects_exactly_the_example():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "webserver"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert selected == ["examples/test_webserver.py::test_webserver"], proc.stdout


def test_node_names_are_fixtures_listed_by_pytest():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-q", "-p", "no:cacheprovider", "examples/test_webserver.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("server", "client", "vms", "vm_factory"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), (name, proc.stdout)


def test_two_multi_vm_tests_in_parallel_with_xdist(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "log_cli=false",
            f"--vm-output-dir={tmp_path}",
            "examples/test_webserver.py",
            "examples/test_router.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "2 passed" in proc.stdout
