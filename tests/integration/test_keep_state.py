"""--vm-keep-state: a file written by the guest survives into the next pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import seeded_cache

TEST = """
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"keeper": MachineConfig()})
def test_keep(keeper):
    previous = keeper.execute("cat /root/runs")[1]
    keeper.succeed("echo run >> /root/runs && sync")
    print("PREVIOUS=" + repr(previous), flush=True)
    keeper.shutdown()
"""


def keeper_runs(run_pytest, tmp_path: Path, env: dict[str, str] | None = None) -> Callable[..., str]:
    """``run(*options, ok=True)``: pytest on the keeper test in ``tmp_path`` (its stdout); ``ok``: whether it passes."""
    (tmp_path / "test_keep.py").write_text(TEST)

    def run(*extra: str, ok: bool = True) -> str:
        proc = run_pytest(
            "-s", "-q", f"--vm-output-dir={tmp_path / 'o'}", *extra, "test_keep.py", cwd=tmp_path, env=env
        )
        assert (proc.returncode == 0) == ok, proc.stdout[-3000:]
        return proc.stdout

    return run


def test_keep_state_survives_into_the_next_run(tmp_path, run_pytest):
    run = keeper_runs(run_pytest, tmp_path)
    assert "PREVIOUS=''" in run("--vm-keep-state")
    assert "PREVIOUS='run\\n'" in run("--vm-keep-state")
    # Without the option every run starts from the image again.
    assert "PREVIOUS=''" in run()


def test_keep_state_survives_cache_gc_all_and_a_rebuilt_base_is_named(tmp_path, store, run_pytest):
    """A kept disk records its base in the cache: `vmtest cache gc --all` keeps it, and a base rebuilt under
    the disk is a LaunchError saying what to do (a private cache, seeded from the shared one)."""
    from vmtest import MachineConfig

    image = store.get(MachineConfig())
    cache = seeded_cache(store, tmp_path / "cache", image.disk)
    env = dict(os.environ, VMTEST_CACHE_DIR=str(cache))
    run = keeper_runs(run_pytest, tmp_path, env)

    assert "PREVIOUS=''" in run("--vm-keep-state")
    gc = subprocess.run(
        [sys.executable, "-m", "vmtest.cli", "cache", "gc", "--all"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert f"images/{image.key}" not in gc.stdout
    assert "PREVIOUS='run\\n'" in run("--vm-keep-state")  # the kept disk booted again on its kept base
    base = cache / image.disk.relative_to(store.cache.root)
    base.unlink()  # "rebuilt": a new file in the old one's place
    subprocess.run(["cp", str(image.disk), str(base)], check=True)
    failed = run("--vm-keep-state", ok=False)
    assert "opening its kept root disk" in failed and "rebuilt" in failed and "rm " in failed, failed[-3000:]
