"""Fixtures shared by the unit and the integration tests."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def http_store(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(directory, its URL) of an empty ``store`` directory served by ``python -m http.server`` on 127.0.0.1
    (a remote cache's layout: ``kinds/key.tar.*`` below it); the server ends with the test."""
    root = tmp_path / "served"
    (root / "store").mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"port (\d+)", proc.stdout.readline())
        assert match, "http.server did not say its port"
        yield root / "store", f"http://127.0.0.1:{match.group(1)}/store"
    finally:
        proc.kill()
        proc.wait()
