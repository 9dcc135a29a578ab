"""NixOS test-script parity on real guests: a dashed node name, the script globals as fixtures, a machine
created mid-test on the VLAN, copy_from_machine, streamed output, each subtest its own result."""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET

import pytest

from vmtest import MachineConfig

ECHO = {"echo.service": "[Service]\nExecStart=/bin/sh -c 'while true; do hostname | nc -N -l 7000; done'\n"}


@pytest.mark.vmtest(nodes={"server-lazy": MachineConfig(units=ECHO, services=["echo.service"])})
def test_dashed_name_globals_and_a_machine_created_on_the_vlan(server_lazy, start_all, create_machine, vms):
    start_all()
    assert server_lazy.succeed("hostname").strip() == "server-lazy"  # the host name keeps its dash
    late = create_machine("late-one", MachineConfig(), network=True)  # joins VLAN 1 as node 2
    assert vms.late_one is late and vms.machines["late-one"] is late
    assert late.succeed("hostname").strip() == "late-one"
    assert late.succeed("ip -o -4 addr show dev eth1").split()[3] == "192.168.1.2/24"
    assert late.succeed("getent ahostsv4 server-lazy").split()[0] == "192.168.1.1"
    server_lazy.wait_for_open_port(7000, timeout=120)
    reply = late.wait_until_succeeds("nc -w 10 server-lazy 7000 </dev/null | grep -x server-lazy", timeout=60)
    assert reply == "server-lazy\n"


@pytest.mark.vmtest(nodes={"machine": MachineConfig()})
def test_copy_from_machine_and_streamed_output(machine, tmp_path):
    machine.succeed("mkdir -p /root/d && echo payload > /root/d/f")
    copied = machine.copy_from_machine("/root/d")  # no target: the test's output directory
    assert copied == machine.output_dir / "d" and (copied / "f").read_text() == "payload\n"
    assert machine.copy_from_machine("/root/d/f", "sub") == machine.output_dir / "sub" / "f"  # relative
    with pytest.warns(DeprecationWarning, match="copy_from_machine"):
        assert machine.copy_from_vm("/root/d/f", tmp_path).read_text() == "payload\n"

    result: dict[str, str] = {}
    with machine.streaming():
        command = "echo streamed-early; sleep 8; echo streamed-late"
        worker = threading.Thread(target=lambda: result.update(out=machine.succeed(command)))
        worker.start()
        machine.wait_for_console_text("streamed-early", timeout=60)
        assert worker.is_alive()  # the first line is in the log while the command still runs
        worker.join(120)
    assert result["out"] == "streamed-early\nstreamed-late\n"  # and the call still returns it whole
    assert "streamed-late" in machine.get_console_log()
    machine.succeed("echo not-streamed")
    assert "not-streamed" not in machine.get_console_log()


SUBTESTS = """
import pytest
from vmtest import MachineConfig


@pytest.mark.vmtest(nodes={"web-1": MachineConfig()})
def test_three(web_1, subtest):
    with subtest("the host name"):
        assert web_1.succeed("hostname").strip() == "web-1"
    with subtest("a command that fails"):
        web_1.succeed("cat /etc/does-not-exist")
    with subtest("a wrong expectation"):
        assert web_1.succeed("echo 1").strip() == "2"
"""


def test_two_failing_subtests_of_three_are_both_reported_and_listed_in_junit(tmp_path, run_pytest):
    (tmp_path / "test_three.py").write_text(SUBTESTS)
    junit = tmp_path / "junit.xml"
    proc = run_pytest(
        "-rA",
        f"--vm-output-dir={tmp_path / 'out'}",
        f"--junitxml={junit}",
        "test_three.py",
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="250"),  # summary lines unabridged
    )
    text = proc.output
    assert proc.returncode == 1, text[-3000:]
    assert "SUBFAILED[a command that fails] test_three.py::test_three - vmtest.core.errors.CommandFailed" in text
    assert "SUBFAILED[a wrong expectation] test_three.py::test_three - AssertionError" in text
    assert "FAILED test_three.py::test_three - contains 2 failed subtests" in text
    cases = {
        tc.get("name"): [f.get("message", "") for f in tc if f.tag == "failure"]
        for tc in ET.parse(junit).getroot().iter("testcase")
    }
    assert cases["test_three[the host name]"] == []
    assert "cat /etc/does-not-exist" in cases["test_three[a command that fails]"][0]
    assert cases["test_three[a wrong expectation]"][0].startswith("AssertionError")
    assert cases["test_three"] == ["contains 2 failed subtests"]
