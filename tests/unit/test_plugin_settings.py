"""vmtest's pytest settings: command line, then environment, then ini file (runs pytest, no QEMU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import dataclasses, json
from vmtest.plugin.settings import settings

def test_dump(pytestconfig):
    print("SETTINGS=" + json.dumps(dataclasses.asdict(settings(pytestconfig)), default=str))
"""


def _run(
    tmp_path: Path,
    ini: str = "",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    probe: str = PROBE,
):
    (tmp_path / "test_probe.py").write_text(probe)
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VMTEST_")}
    clean["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
    )


def _settings(tmp_path: Path, ini: str = "", args: tuple[str, ...] = (), env: dict[str, str] | None = None):
    out = _run(tmp_path, ini, args, env)
    for line in out.stdout.splitlines():
        if line.startswith("SETTINGS="):
            return json.loads(line.split("=", 1)[1])
    raise AssertionError(out.stdout + out.stderr)


def test_defaults(tmp_path: Path) -> None:
    assert _settings(tmp_path) == {
        "accel": "auto",
        "cache_dir": str(tmp_path / "xdg" / "vmtest"),
        "cache_url": None,
        "cache_max_size": 20 << 30,
        "output_dir": str(tmp_path / "vmtest-output"),
        "keep_state": False,
        "rebuild": False,
        "snapshots": "on",
        "global_timeout": 3600.0,
        "record": False,
        "record_interval": 0.5,
        "interactive": False,
        "keep_on_failure": False,
        "keep_for": 1800.0,
        "debug_hook": False,
    }


def test_record_from_each_source(tmp_path: Path) -> None:
    assert _settings(tmp_path, args=("--vm-record", "--vm-record-interval=2"))["record"] is True
    assert _settings(tmp_path, env={"VMTEST_RECORD": "1"})["record"] is True
    assert _settings(tmp_path, "vm_record = true\nvm_record_interval = 0.25\n")["record_interval"] == 0.25


def test_snapshots_off_from_each_source(tmp_path: Path) -> None:
    assert _settings(tmp_path, args=("--vm-snapshots=off",))["snapshots"] == "off"
    assert _settings(tmp_path, env={"VMTEST_SNAPSHOTS": "off"})["snapshots"] == "off"
    assert _settings(tmp_path, "vm_snapshots = off\n")["snapshots"] == "off"


def test_cache_url_from_each_source(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8000/store"
    assert _settings(tmp_path, args=(f"--vm-cache-url={url}/",))["cache_url"] == url
    assert _settings(tmp_path, env={"VMTEST_CACHE_URL": url})["cache_url"] == url
    assert _settings(tmp_path, f"vm_cache_url = {url}\n")["cache_url"] == url


def test_cache_max_size_from_each_source(tmp_path: Path) -> None:
    assert _settings(tmp_path, args=("--vm-cache-max-size=512M",))["cache_max_size"] == 512 << 20
    assert _settings(tmp_path, env={"VMTEST_CACHE_MAX_SIZE": "none"})["cache_max_size"] == 0
    assert _settings(tmp_path, "vm_cache_max_size = 1.5T\n")["cache_max_size"] == int(1.5 * (1 << 40))


def test_ini_file(tmp_path: Path) -> None:
    ini = "vm_accel = tcg\nvm_output_dir = out\nvm_keep_state = true\nvm_global_timeout = 120\n"
    got = _settings(tmp_path, ini)
    assert got["accel"] == "tcg" and got["output_dir"] == str(tmp_path / "out") and got["keep_state"] is True
    assert got["global_timeout"] == 120.0


def test_flags(tmp_path: Path) -> None:
    got = _settings(
        tmp_path,
        "vm_rebuild = false\n",
        args=("--vm-keep-state", "--vm-rebuild", "--vm-cache-dir", "c"),
        env={"VMTEST_KEEP_STATE": "0"},
    )
    assert got["keep_state"] is True and got["rebuild"] is True and got["cache_dir"] == str(tmp_path / "c")
    got = _settings(tmp_path, "vm_keep_state = yes\n", env={"VMTEST_KEEP_STATE": "off", "VMTEST_REBUILD": "on"})
    assert got["keep_state"] is False and got["rebuild"] is True


def test_environment_beats_ini_and_command_line_beats_both(tmp_path: Path) -> None:
    ini = "vm_accel = kvm\nvm_global_timeout = 120\n"
    got = _settings(tmp_path, ini, env={"VMTEST_ACCEL": "tcg", "VMTEST_GLOBAL_TIMEOUT": "60"})
    assert got["accel"] == "tcg" and got["global_timeout"] == 60.0
    got = _settings(
        tmp_path, ini, args=("--vm-accel", "auto", "--vm-global-timeout", "30"), env={"VMTEST_ACCEL": "tcg"}
    )
    assert got["accel"] == "auto" and got["global_timeout"] == 30.0


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    out = _run(tmp_path, "vm_accel = hvf\n")
    assert out.returncode == 4  # pytest's usage error, before any test runs
    text = out.stdout + out.stderr
    assert "vmtest: vm_accel='hvf': must be one of 'auto', 'kvm', 'tcg'" in text and "from the ini file" in text
    assert "test_dump" not in text
    out = _run(tmp_path, env={"VMTEST_GLOBAL_TIMEOUT": "abc"})
    assert out.returncode == 4
    assert "VMTEST_GLOBAL_TIMEOUT='abc': not a number of seconds" in out.stdout + out.stderr
    out = _run(tmp_path, args=("--vm-accel", "hvf"))
    assert out.returncode == 4 and "invalid choice: 'hvf'" in out.stdout + out.stderr


def test_help_shows_the_declarations(tmp_path: Path) -> None:
    out = _run(tmp_path, args=("--help",), env={"VMTEST_ACCEL": "hvf"})  # a bad setting does not hide the help
    assert out.returncode == 0
    assert "--vm-accel={auto,kvm,tcg}" in out.stdout and "VMTEST_GLOBAL_TIMEOUT" in out.stdout
    assert "vm_keep_state (bool)" in out.stdout


BUILT_BY_THE_TEST = """
import json
from vmtest import Machine
from vmtest.config.settings import Settings
from vmtest.image import ImageStore
from vmtest.vm import accel
from vmtest.vm.restore import Choice

def test_built_here():
    store = ImageStore()
    machine = Machine("m")  # nothing starts at construction
    print("BUILT=" + json.dumps({
        "snapshots": Choice.of(store).enabled,
        "cache_dir": str(store.cache.root),
        "cache_url": store.cache_url,
        "accel": accel.requested(),
        "screens": str(machine.screen.output_dir),
    }))
"""


def test_a_machine_a_test_builds_itself_gets_the_sessions_settings(tmp_path: Path) -> None:
    # --vm-snapshots=off on the command line once reached only the plugin's own machines: a Machine or
    # ImageStore built by a test (or a fixture) read the environment alone and restored snapshots
    url = "http://127.0.0.1:9/store"
    args = ("--vm-snapshots=off", "--vm-accel=tcg", "--vm-cache-dir=c", f"--vm-cache-url={url}")
    out = _run(tmp_path, "vm_output_dir = out\n", args, probe=BUILT_BY_THE_TEST)
    built = [line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("BUILT=")]
    assert out.returncode == 0 and built, out.stdout + out.stderr
    assert json.loads(built[0]) == {
        "snapshots": False,
        "cache_dir": str(tmp_path / "c"),
        "cache_url": url,
        "accel": "tcg",
        "screens": str(tmp_path / "out" / "m"),
    }
    # without a setting anywhere: the defaults, as from the environment
    out = _run(tmp_path, probe=BUILT_BY_THE_TEST)
    built = [line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("BUILT=")]
    assert out.returncode == 0 and built, out.stdout + out.stderr
    got = json.loads(built[0])
    assert (got["snapshots"], got["cache_dir"], got["accel"]) == (True, str(tmp_path / "xdg" / "vmtest"), "auto")
