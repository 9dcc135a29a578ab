"""A failing VM test leaves console lines, a screenshot and the journal; a hung one is killed."""

from __future__ import annotations

import time


def test_failure_report_has_console_screenshot_and_journal(tmp_path, run_pytest):
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    stale = out / "examples_test_failing.py_test_wrong_expectation" / "web-old-screen.png"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by an earlier run")
    proc = run_pytest(
        "examples/test_failing.py",
        "--run-demo-failures",
        f"--vm-output-dir={out}",
        "--vm-global-timeout=60",
        f"--junitxml={junit}",
    )
    text = proc.output
    assert proc.returncode == 1, text[-3000:]
    assert "3 failed" in text, text[-3000:]
    # Report section with the console tail of the node.
    assert "vmtest machines" in text and "web: last 20 console lines" in text
    wrong = next(p for p in out.iterdir() if "wrong_expectation" in p.name)
    console = (wrong / "web-console.log").read_bytes()
    assert b"demo: about to fail" in console
    assert not stale.exists()  # the test ran again: its directory holds only this run's files
    section = text[text.index("web: last 20 console lines since the test began") :]
    assert "demo: about to fail" in section[: section.index("web: saved")]
    png = (wrong / "web-screen.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "vmtest-backdoor.service" in (wrong / "web-journal.txt").read_text()
    # The hung test was stopped by its own global timeout (the marker's, not the run's 60 s) and says so.
    assert "the global timeout of 25s expired" in text
    hung = next(p for p in out.iterdir() if "global_timeout" in p.name)
    assert (hung / "sleeper-console.log").exists()
    # vm_factory machines get the report too; a machine whose error quotes its console lines is not
    # quoted again, and the error quotes the lines that matter: none came during the failing call, so it
    # says so and shows the few lines before it, the last of them the test's own marker.
    assert "box: console lines: in the error above" in text and "box: last 20 console lines" not in text
    error = text[text.index("CommandFailed: box: command 'test -e /no/such/file'") :]
    error = error[: error.index("vmtest machines")]
    assert "(no console output since this call began; the last lines before it:)" in error
    quoted = [line for line in error.splitlines() if line.startswith("E ")]  # the error's own lines
    assert [line.split(maxsplit=1)[1] for line in quoted if "factory machine is about" in line] == [
        "demo: the factory machine is about to fail"
    ]
    assert "--- stderr: (empty) ---" in error
    factory = next(p for p in out.iterdir() if "factory_machine" in p.name)
    assert b"demo: the factory machine is about to fail" in (factory / "box-console.log").read_bytes()
    # JUnit XML carries the section too.
    assert "web: last 20 console lines" in junit.read_text()


FACTORY_HANG = """
import pytest

@pytest.mark.vmtest(global_timeout=15)
def test_factory_hang(vm_factory):
    box = vm_factory("box")
    box.succeed("sleep 100000", timeout=100000)
"""


def test_a_vm_factory_tests_own_global_timeout(tmp_path, run_pytest):
    """A vm_factory test's marker may carry global_timeout alone (no nodes): its machine is killed then."""
    (tmp_path / "test_factory_hang.py").write_text(FACTORY_HANG)
    start = time.monotonic()
    proc = run_pytest("-q", f"--vm-output-dir={tmp_path / 'o'}", "test_factory_hang.py", cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.output[-3000:]
    assert "the global timeout of 15s expired" in proc.output, proc.output[-3000:]
    assert elapsed < 120, elapsed  # not the run's default of an hour
