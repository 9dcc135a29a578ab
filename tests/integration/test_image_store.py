"""The image store against the real Debian archive, mmdebstrap and the CLI."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from vmtest import ConfigError, MachineConfig
from vmtest.core import statedirs
from vmtest.core.cache import Cache
from vmtest.core.statedirs import BUILD_TREE_PARENT, BUILD_TREE_PREFIX


def _write_config(tmp_path, body: str):
    path = tmp_path / "configs.py"
    path.write_text("from vmtest import MachineConfig\n" + body)
    return path


def test_cache_hit_and_rebuild_only_what_changed(store, nonce):
    base = MachineConfig(files={"/etc/nonce": nonce})
    first = store.get(base)
    meta = json.loads((first.disk.parent / "meta.json").read_text())
    again = store.get(base)
    # A hit: same entry, not rebuilt (its creation stamp is unchanged).
    assert again.disk == first.disk
    assert json.loads((again.disk.parent / "meta.json").read_text())["created"] == meta["created"]
    changed_file = store.get(base.replace(files={"/etc/nonce": nonce + "x"}))
    changed_pkg = store.get(base.replace(packages=["less"]))
    assert len({first.key, changed_file.key, changed_pkg.key}) == 3
    # The earlier entry is still there, untouched.
    assert first.disk.is_file()
    assert json.loads((first.disk.parent / "meta.json").read_text())["created"] == meta["created"]
    for image in (first, changed_file, changed_pkg):
        store.cache.remove("images", image.key, store.logger)


def test_unknown_package_is_a_clear_error(store, nonce):
    config = MachineConfig(packages=["no-such-package-vmtest"], files={"/etc/nonce": nonce})
    # Caught against the host's apt lists before anything is built (no mmdebstrap run).
    with pytest.raises(ConfigError) as info:
        store.get(config)
    text = str(info.value)
    assert "no-such-package-vmtest" in text and "packages=" in text and "apt-cache search" in text
    # Nothing half-built is left behind.
    key = store.key(config, store.kernel())
    assert store.cache.lookup("images", key) is None
    assert not [p for p, _ in store.cache.partial_builds() if key in p.name]


def test_two_builds_of_one_config_build_once(tmp_path, store, nonce, cli):
    path = _write_config(tmp_path, f"cfg = MachineConfig(files={{'/etc/nonce': {nonce!r}}})\n")
    procs = [cli("build", f"{path}::cfg", cache_dir=store.cache.root) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    builds = sum(out.count("(done: mmdebstrap bookworm") for out in outputs)
    assert builds == 1, outputs
    keys = {line.split()[2] for out in outputs for line in out.splitlines() if "ready in" in line}
    assert len(keys) == 1
    store.cache.remove("images", keys.pop(), store.logger)


def test_killed_build_leaves_no_entry_and_next_build_works(tmp_path, store, nonce, cli, processes_mentioning):
    path = _write_config(tmp_path, f"cfg = MachineConfig(files={{'/etc/nonce': {nonce!r}}})\n")
    proc = cli("build", f"{path}::cfg", cache_dir=store.cache.root)
    seen = []
    deadline = time.monotonic() + 300
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "vmtest-customize: enabling" in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any("vmtest-customize: enabling" in line for line in seen), "".join(seen)
    config = MachineConfig(files={"/etc/nonce": nonce})
    key = store.key(config, store.kernel())
    # mmdebstrap and everything it started died with the build.
    time.sleep(2)
    assert processes_mentioning(f"images-{key}") == {}
    # Its directory tree in memory (when the host has room) is an orphan that the next sweep removes.
    trees = list(BUILD_TREE_PARENT.glob(f"{BUILD_TREE_PREFIX}images-{key}.*"))
    assert trees == [] or set(trees) <= set(statedirs.orphans(BUILD_TREE_PARENT, BUILD_TREE_PREFIX))
    cli("cache", "gc", cache_dir=store.cache.root).communicate(timeout=120)
    assert not [t for t in trees if t.exists()]
    ls = cli("cache", "ls", cache_dir=store.cache.root)
    listing = ls.communicate(timeout=60)[0]
    assert key not in listing
    # Listed as a leftover, unless a pytest run of another test on this cache swept it already at its start
    # (plugin/hooks.py: sweep_leftovers; CI run 4 of 6 Dec); either way nothing looks complete.
    left = [p for p, _ in Cache(store.cache.root).partial_builds() if key in p.name]
    assert "leftover" in listing or not left, listing
    image = store.get(config)
    assert image.disk.is_file()
    assert not [p for p, _ in Cache(store.cache.root).partial_builds() if key in p.name]
    store.cache.remove("images", key, store.logger)


def test_cli_build_errors_are_clear(tmp_path, cli):
    path = _write_config(tmp_path, "cfg = MachineConfig()\nnot_a_config = 3\n")
    for target, expected in [
        (f"{path}::missing", "defines no 'missing'"),
        (f"{path}::not_a_config", "is a int, not a MachineConfig"),
        (f"{tmp_path}/nope.py::cfg", "no such file"),
        ("nodoublecolon", "expected PATH::NAME"),
    ]:
        proc = cli("build", target)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 2, out
        assert expected in out and "Traceback" not in out, out


def test_doctor_names_missing_tesseract_and_fix(tmp_path, cli):
    # A PATH holding every tool the doctor looks for except tesseract.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    import shutil

    from vmtest.cli.doctor import PROGRAMS

    for program, _ in PROGRAMS + (("ldd", ""), ("apt-cache", "")):
        if program == "tesseract":
            continue
        found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        assert found, program
        (bindir / program).symlink_to(found)
    proc = cli("doctor", "--no-accel", env={"PATH": str(bindir)})
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, out
    assert "[MISSING] tesseract" in out
    assert "apt-get install -y tesseract-ocr" in out
    assert "[ok     ] qemu-img" in out
