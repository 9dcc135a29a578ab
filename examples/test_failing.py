"""Tests that fail on purpose, to show what a failure report contains.

Skipped by default; run them with::

    pytest examples/test_failing.py --run-demo-failures

The report gets, for each machine, its last console lines, and the output
directory (``vmtest-output/<test>/``) its console log, a screenshot and the
journal of the current boot.
"""

import pytest

from vmtest import MachineConfig

web = MachineConfig(packages=["curl"])


@pytest.mark.demo_failure
@pytest.mark.vmtest(nodes={"web": web})
def test_wrong_expectation(web):
    web.succeed("echo 'demo: about to fail' > /dev/ttyS0")
    assert web.succeed("curl --version").startswith("wget")


@pytest.mark.demo_failure
# its own global timeout, shorter than the run's (--vm-global-timeout)
@pytest.mark.vmtest(nodes={"sleeper": MachineConfig()}, global_timeout=25)
def test_hangs_until_the_global_timeout(sleeper):
    sleeper.succeed("sleep 100000", timeout=100000)


@pytest.mark.demo_failure
def test_factory_machine_fails(vm_factory):
    box = vm_factory("box")
    box.succeed("echo 'demo: the factory machine is about to fail' > /dev/ttyS0")
    # The serial console and the shell are separate channels: the command's answer can come before
    # the line it wrote to ttyS0 has reached the host. Wait for the line, so the error quotes it.
    box.wait_for_console_text("demo: the factory machine is about to fail", timeout=30)
    box.succeed("test -e /no/such/file")
