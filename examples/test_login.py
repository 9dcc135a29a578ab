"""Log in on the console like a person would: read the screen, type on the keyboard.

The guest shows a login prompt on tty1 (agetty). The test finds it by OCR,
types the user name and password with ``send_chars``, and reads the shell
prompt off the screen. Run it with ``pytest examples/test_login.py``.
"""

import pytest

from vmtest import MachineConfig

login = MachineConfig(build_commands=["echo root:correct-horse | chpasswd"])


@pytest.mark.vmtest(nodes={"machine": login})
def test_login(machine):
    machine.wait_for_unit("getty@tty1.service")
    machine.wait_for_text(r"machine login:")
    machine.send_chars("root\n")
    machine.wait_for_text(r"Password:")
    machine.send_chars("correct-horse\n")
    machine.wait_for_text(r"root@machine:~#")
    machine.send_chars("echo The answer is $((6 * 7)) > /tmp/answer; cat /tmp/answer\n")
    machine.wait_for_text(r"^The answer is 42$")
    assert machine.succeed("cat /tmp/answer") == "The answer is 42\n"
    machine.screenshot("logged-in")
