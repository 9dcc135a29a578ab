"""--vm-keep-state: a file written by the guest survives into the next pytest run."""

from __future__ import annotations

import subprocess
import sys

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


def test_keep_state_survives_into_the_next_run(tmp_path):
    (tmp_path / "test_keep.py").write_text(TEST)
    out = tmp_path / "o"

    def run(*extra: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-s",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "log_cli=false",
                f"--vm-output-dir={out}",
                *extra,
                "test_keep.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        return proc.stdout

    assert "PREVIOUS=''" in run("--vm-keep-state")
    assert "PREVIOUS='run\\n'" in run("--vm-keep-state")
    # Without the option every run starts from the image again.
    assert "PREVIOUS=''" in run()


def test_keep_state_survives_cache_gc_all_and_a_rebuilt_base_is_named(tmp_path, store):
    """A kept disk records its base in the cache: `vmtest cache gc --all` keeps it, and a base rebuilt under
    the disk is a LaunchError saying what to do (a private cache, seeded from the shared one)."""
    from vmtest import MachineConfig

    image = store.get(MachineConfig())
    shared = store.cache.root
    cache = tmp_path / "cache"
    for entry in (image.disk.parent, image.kernel.parent):
        rel = entry.relative_to(shared)
        (cache / rel.parent).mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(entry), str(cache / rel)], check=True)
    if (shared / "accel.json").exists():
        subprocess.run(["cp", str(shared / "accel.json"), str(cache / "accel.json")], check=True)
    (tmp_path / "test_keep.py").write_text(TEST)
    out = tmp_path / "o"
    env = dict(__import__("os").environ, VMTEST_CACHE_DIR=str(cache))

    def run(*extra: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-s",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "log_cli=false",
                f"--vm-output-dir={out}",
                "--vm-keep-state",
                *extra,
                "test_keep.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert (proc.returncode == 0) == ok, proc.stdout[-3000:]
        return proc.stdout

    assert "PREVIOUS=''" in run()
    gc = subprocess.run(
        [sys.executable, "-m", "vmtest.cli", "cache", "gc", "--all"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert f"images/{image.key}" not in gc.stdout
    assert "PREVIOUS='run\\n'" in run()  # the kept disk booted again on its kept base
    base = cache / image.disk.relative_to(shared)
    base.unlink()  # "rebuilt": a new file in the old one's place
    subprocess.run(["cp", str(image.disk), str(base)], check=True)
    failed = run(ok=False)
    assert "opening its kept root disk" in failed and "rebuilt" in failed and "rm " in failed, failed[-3000:]
