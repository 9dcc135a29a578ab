"""vmtest's pytest settings: command line, then environment, then ini file (runs pytest, no QEMU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = '''
import json
from vmtest.plugin.hooks import setting

def test_dump(pytestconfig):
    keys = ["accel", "cache_dir", "output_dir", "keep_state", "rebuild", "global_timeout"]
    print("SETTINGS=" + json.dumps({k: setting(pytestconfig, k) for k in keys}))
'''


def _settings(tmp_path: Path, ini: str = "", args: tuple[str, ...] = (), env: dict[str, str] | None = None):
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
                         cwd=tmp_path, env={**clean, **(env or {})}, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("SETTINGS="):
            return json.loads(line.split("=", 1)[1])
    raise AssertionError(out.stdout + out.stderr)


def test_defaults(tmp_path: Path) -> None:
    assert _settings(tmp_path) == {"accel": None, "cache_dir": None, "output_dir": None,
                                   "keep_state": None, "rebuild": None, "global_timeout": None}


def test_ini_file(tmp_path: Path) -> None:
    ini = "vm_accel = tcg\nvm_output_dir = out\nvm_keep_state = true\nvm_global_timeout = 120\n"
    got = _settings(tmp_path, ini)
    assert got["accel"] == "tcg" and got["output_dir"] == "out" and got["keep_state"] is True
    assert got["global_timeout"] == 120.0


def test_environment_beats_ini_and_command_line_beats_both(tmp_path: Path) -> None:
    ini = "vm_accel = kvm\nvm_global_timeout = 120\n"
    got = _settings(tmp_path, ini, env={"VMTEST_ACCEL": "tcg", "VMTEST_GLOBAL_TIMEOUT": "60"})
    assert got["accel"] == "tcg" and got["global_timeout"] == 60.0
    got = _settings(tmp_path, ini, args=("--vm-accel", "auto", "--vm-global-timeout", "30"),
                    env={"VMTEST_ACCEL": "tcg"})
    assert got["accel"] == "auto" and got["global_timeout"] == 30.0


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nvm_accel = hvf\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "accelerator 'hvf'" in out.stdout + out.stderr
