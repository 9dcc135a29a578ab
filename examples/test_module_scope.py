"""A module-scoped suite: the machine boots once and serves every test here."""

import pytest

from vmtest import MachineConfig

box = MachineConfig(packages=["curl"])

pytestmark = pytest.mark.vmtest(nodes={"box": box}, scope="module")


def test_first_sees_a_fresh_machine(box):
    box.succeed("echo first > /root/mark")
    assert box.succeed("hostname").strip() == "box"


def test_second_shares_the_same_machine(box):
    # Written by the previous test: same machine, not rebooted.
    assert box.succeed("cat /root/mark") == "first\n"


def test_single_node_is_also_machine(machine, box):
    assert machine is box
