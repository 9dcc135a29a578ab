"""Sharded CI: a small VM suite split into 2 pytest-split groups, each on its own cache filled only by
``vmtest cache import`` of one export, gives the results of an unsplit run, builds no image and boots no
machine (the export's booted snapshot is restored)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmtest.image import ImageStore

pytestmark = pytest.mark.integration

CONFIG = 'MachineConfig(packages=["curl"], files={"/etc/motd": "hello from vmtest\\n"})'  # examples/test_smoke.py's
SUITE = {
    "pytest.ini": "[pytest]\nlog_cli = true\nlog_cli_level = INFO\n",
    "test_mod.py": f"""
        import pytest
        from vmtest import MachineConfig

        pytestmark = pytest.mark.vmtest(nodes={{"machine": {CONFIG}}}, scope="module")

        def test_motd(machine):
            assert machine.succeed("cat /etc/motd") == "hello from vmtest\\n"

        @pytest.mark.xfail(strict=True, reason="shows that failures travel too")
        def test_expected_failure(machine):
            assert machine.succeed("echo a") == "b\\n"

        def test_skipped(machine):
            pytest.skip("not today")
        """,
    "test_fn.py": f"""
        import pytest
        from vmtest import MachineConfig

        @pytest.mark.vmtest(nodes={{"machine": {CONFIG}}})
        def test_curl(machine):
            assert "curl" in machine.succeed("curl --version")

        @pytest.mark.vmtest(nodes={{"machine": {CONFIG}}})
        def test_hostname(machine):
            assert machine.succeed("hostname").strip() == "machine"
        """,
}


def run(argv: list[str], cwd: Path, cache: Path, timeout: float = 900, stdout_only: bool = False) -> str:
    env = dict(os.environ, VMTEST_CACHE_DIR=str(cache), VMTEST_OUTPUT_DIR=str(cwd / "out"))
    env.pop("VMTEST_CACHE_URL", None)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{argv} exited with {proc.returncode}:\n{output[-4000:]}"
    return proc.stdout if stdout_only else output


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / skipped (xfail counts as skipped in JUnit XML)."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        result[f"{case.get('classname')}::{case.get('name')}"] = kind
    return result


def test_two_groups_on_imported_caches_give_the_unsplit_results(tmp_path: Path, store: ImageStore) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, text in SUITE.items():
        (suite / name).write_text(textwrap.dedent(text))
    vmtest = [sys.executable, "-m", "vmtest.cli"]
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]

    # One export of what the suite needs, from the shared cache (built there if missing). The suite ran there
    # once before (restoring its machine's snapshot, or on a new host saving it): the export carries that
    # snapshot, and the groups restore it rather than boot.
    archive = tmp_path / "vmtest-cache.tar.zst"
    run([*pytest_cmd, "test_fn.py::test_hostname"], suite, store.cache.root)
    key = run([*vmtest, "cache", "key", "."], suite, store.cache.root, stdout_only=True).strip()
    exported = run([*vmtest, "cache", "export", ".", "-o", str(archive), "--build"], suite, store.cache.root)
    # only the snapshot the run above restored or saved (older ones of the same machine stay home)
    assert "exported 1 image(s), 1 kernel(s), 1 snapshot(s)" in exported, exported

    def fresh_cache(name: str) -> Path:
        cache = tmp_path / name
        imported = run([*vmtest, "cache", "import", str(archive)], suite, cache)
        assert "installed images/" in imported and "installed kernels/" in imported
        # the imported cache yields the same key as the one the archive was made for
        assert run([*vmtest, "cache", "key", "."], suite, cache, stdout_only=True).strip() == key
        return cache

    durations = suite / ".test_durations"
    unsplit = run(
        [*pytest_cmd, ".", "--store-durations", "--durations-path", str(durations), "--junitxml", "all.xml"],
        suite,
        fresh_cache("cache-all"),
    )
    assert durations.is_file()
    assert "saving a booted snapshot" not in unsplit, unsplit[-3000:]
    expected = outcomes(suite / "all.xml")
    assert sorted(expected.values()) == ["passed", "passed", "passed", "skipped", "skipped"]

    union: dict[str, str] = {}
    group_of: dict[str, int] = {}
    for group in (1, 2):
        log = run(
            [
                *pytest_cmd,
                ".",
                "--splits",
                "2",
                "--group",
                str(group),
                "--durations-path",
                str(durations),
                "--junitxml",
                f"group{group}.xml",
            ],
            suite,
            fresh_cache(f"cache-{group}"),
        )
        got = outcomes(suite / f"group{group}.xml")
        assert got, f"group {group} ran nothing"
        assert not set(got) & set(union), "a test ran in both groups"
        union.update(got)
        group_of.update(dict.fromkeys(got, group))
        assert "vmtest: images: 1 from the cache, 0 fetched from the remote cache, 0 built" in log, log[-3000:]
        assert "building image" not in log and "mmdebstrap" not in log
        assert "(restore of a booted snapshot" in log and "saving a booted snapshot" not in log, log[-3000:]
    assert "vmtest: images: 1 from the cache, 0 fetched from the remote cache, 0 built" in unsplit
    assert union == expected
    # the module-scoped machine's tests stayed in one group
    assert len({group_of[n] for n in expected if n.startswith("test_mod")}) == 1
