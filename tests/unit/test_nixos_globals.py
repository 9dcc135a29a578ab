"""NixOS script globals as fixtures, dashed node names, subtests as results of their own (pytest runs small
test files in a subprocess; no machine is started)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.core.errors import ConfigError
from vmtest.net.driver import Driver, python_name
from vmtest.net.plan import plan

TESTS = """
import pytest
from vmtest import MachineConfig


@pytest.mark.vmtest(nodes={"server-lazy": MachineConfig(), "client": MachineConfig()})
def test_globals(
    server_lazy, client, vms, start_all, subtest, join_all, retry, polling_condition,
    serial_stdout_on, serial_stdout_off, create_machine,
):
    assert server_lazy.name == "server-lazy" and vms.server_lazy is server_lazy
    assert vms.machines["server-lazy"] is server_lazy
    assert start_all == vms.start_all and join_all == vms.join_all and subtest == vms.subtest
    assert retry(lambda last_try: 42, timeout=5) == 42
    serial_stdout_off()
    assert not client.serial_echo and not server_lazy.serial_echo
    serial_stdout_on()
    assert client.serial_echo

    @polling_condition(seconds_interval=1)
    def holds():
        return True

    with holds:
        pass
    late = create_machine("late-one")
    assert vms.late_one is late and late.state.value == "created"
    with pytest.raises(AttributeError):
        vms.nobody


@pytest.mark.vmtest(nodes={"a-b": MachineConfig(), "a_b": MachineConfig()})
def test_clash(vms):
    pass


@pytest.mark.vmtest(nodes={"machine": MachineConfig()})
def test_three_subtests(subtest):
    with subtest("first passes"):
        pass
    with subtest("second fails"):
        assert 1 == 2, "second went wrong"
    with subtest("third fails"):
        raise RuntimeError("third went wrong")
    print("the body went on")


def test_plain_subtests_keep_one_entry(subtests):
    with subtests.test(msg="not a vm test"):
        assert False
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_script.py").write_text(TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=false", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_nixos_script_body_runs_with_its_globals_and_dashed_node_names(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "-rA", "-s")
    assert "PASSED test_script.py::test_globals" in run.stdout, run.stdout
    assert "ERROR test_script.py::test_clash" in run.stdout
    assert "'a-b' and 'a_b' both become the Python name 'a_b'" in run.stdout
    assert "the body went on" in run.stdout  # a failing subtest does not end the test


def test_each_subtest_is_its_own_result_in_the_terminal_and_junit(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "-rA", "--junitxml=out.xml", "test_script.py::test_three_subtests")
    assert "SUBFAILED[second fails] test_script.py::test_three_subtests - AssertionError" in run.stdout, run.stdout
    assert "SUBFAILED[third fails] test_script.py::test_three_subtests - RuntimeError" in run.stdout
    assert "FAILED test_script.py::test_three_subtests - contains 2 failed subtests" in run.stdout
    cases = {
        tc.get("name"): [c.get("message", "") for c in tc if c.tag == "failure"]
        for tc in ET.parse(tmp_path / "out.xml").getroot().iter("testcase")
    }
    assert cases["test_three_subtests[first passes]"] == []
    assert cases["test_three_subtests[second fails]"][0].startswith("AssertionError: second went wrong")
    assert cases["test_three_subtests[third fails]"][0].startswith("RuntimeError: third went wrong")
    assert cases["test_three_subtests"] == ["contains 2 failed subtests"]


def test_subtests_of_other_tests_keep_pytests_junit_layout(tmp_path: Path) -> None:
    _pytest(tmp_path, "--junitxml=out.xml", "test_script.py::test_plain_subtests_keep_one_entry")
    names = [tc.get("name") for tc in ET.parse(tmp_path / "out.xml").getroot().iter("testcase")]
    assert names == ["test_plain_subtests_keep_one_entry"]


@pytest.mark.parametrize(
    ("name", "python"), [("server-lazy", "server_lazy"), ("a.b", "a_b"), ("1node", "_node"), ("ok_1", "ok_1")]
)
def test_python_names_as_nixos_makes_them(name: str, python: str) -> None:
    assert python_name(name) == python


def test_bad_and_clashing_names_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="1..63 letters"):
        Driver({"-bad": MachineConfig()}, store=None, state_root=tmp_path)  # type: ignore[arg-type]
    driver = Driver({"web-1": MachineConfig()}, store=None, state_root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="both become the Python name 'web_1'"):
        driver.create_machine("web_1")
    driver.release()


def test_a_machine_created_on_a_vlan_gets_the_next_number_and_others_keep_theirs(tmp_path: Path) -> None:
    driver = Driver(
        {"b": MachineConfig(), "a": MachineConfig()},
        store=None,
        state_root=tmp_path,  # type: ignore[arg-type]
    )
    before = {name: p.nics for name, p in driver.plans.items()}
    late = driver.create_machine("late", MachineConfig(virtualisation={"vlans": [1, 3]}), network=True)
    assert {name: driver.plans[name].nics for name in before} == before
    assert driver.plans["late"].number == 3 and [n.ipv4 for n in driver.plans["late"].nics] == [
        "192.168.1.3",
        "192.168.3.3",
    ]
    assert driver.vlans == [1, 3] and 3 in driver.switches  # a switch for the new VLAN
    assert "192.168.1.1 a" in late.vm.network.hosts and "192.168.1.3 late" in late.vm.network.hosts
    alone = driver.create_machine("alone", MachineConfig(virtualisation={"vlans": [2]}))  # network=False: no NIC
    assert alone.vm.network.qemu_args == () and "alone" not in driver.plans
    driver.release()


def test_plan_numbers_from_first() -> None:
    assert plan({"x": [1]}, first=7)["x"].nics[0].ipv4 == "192.168.1.7"
