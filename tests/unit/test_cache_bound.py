"""The cache's size bound at the end of a pytest session (runs pytest on a made-up cache, no QEMU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vmtest.core.cache import Cache


def entry(cache: Cache, kind: str, key: str, meta: dict[str, str], size: int, days_unused: float) -> None:
    path = cache.path(kind, key)
    path.mkdir(parents=True)
    (path / "disk").write_bytes(b"x" * size)
    (path / "meta.json").write_text(json.dumps({**meta, "kind": kind, "key": key}))
    then = time.time() - days_unused * 86400
    os.utime(path / "meta.json", (then, then))


def pytest_run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_nothing.py").write_text("def test_passes():\n    pass\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--vm-cache-dir={tmp_path / 'cache'}", *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_session_trims_the_cache_to_its_bound_and_says_so(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    entry(cache, "kernels", "k", {}, 100_000, 3)
    entry(cache, "images", "i", {"kernel_key": "k"}, 400_000, 2)
    entry(cache, "snapshots", "old", {"image_key": "i"}, 300_000, 5)
    entry(cache, "snapshots", "newer", {"image_key": "i"}, 300_000, 1)

    proc = pytest_run(tmp_path, "--vm-cache-max-size=900K")

    assert "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(f"{e.kind}/{e.key}" for e in cache.entries()) == ["images/i", "kernels/k", "snapshots/newer"]
    assert "vmtest: the cache was over its bound (900.0 KiB, --vm-cache-max-size): removed 1 entry" in proc.stdout


def test_no_bound_keeps_everything(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    entry(cache, "images", "i", {"kernel_key": "k"}, 400_000, 30)
    proc = pytest_run(tmp_path, VMTEST_CACHE_MAX_SIZE="none")
    assert "1 passed" in proc.stdout and "over its bound" not in proc.stdout, proc.stdout + proc.stderr
    assert [e.key for e in cache.entries()] == ["i"]


def test_a_session_inside_another_session_on_the_cache_leaves_the_trim_to_it(tmp_path: Path) -> None:
    """A test suite that runs pytest on its own cache: the inner session must not trim what the outer one
    (still running, holding its mark) may be about to open; the outer one trims at its end."""
    cache = Cache(tmp_path / "cache")
    entry(cache, "kernels", "k", {}, 100_000, 3)
    entry(cache, "images", "i", {"kernel_key": "k"}, 400_000, 2)
    entry(cache, "snapshots", "old", {"image_key": "i"}, 300_000, 5)
    entry(cache, "snapshots", "newer", {"image_key": "i"}, 300_000, 1)
    outer = cache.join_sessions()
    try:
        proc = pytest_run(tmp_path, "--vm-cache-max-size=900K")
        assert "1 passed" in proc.stdout and "over its bound" not in proc.stdout, proc.stdout + proc.stderr
        assert len(cache.entries()) == 4
    finally:
        outer.close()
    proc = pytest_run(tmp_path, "--vm-cache-max-size=900K")  # alone now: it trims
    assert "removed 1 entry" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(e.key for e in cache.entries()) == ["i", "k", "newer"]
