"""The smallest vmtest example: boot one Debian guest and run commands in it.

Run it with ``pytest examples/test_smoke.py`` (or ``./run example``).
"""

from vmtest import MachineConfig

machine = MachineConfig(packages=["curl"], files={"/etc/motd": "hello from vmtest\n"})


def test_smoke(vm_factory):
    vm = vm_factory("machine", machine)
    assert vm.succeed("cat /etc/motd") == "hello from vmtest\n"
    assert vm.succeed("uname -s").strip() == "Linux"
    vm.fail("false")
    assert "curl" in vm.succeed("curl --version")
    vm.shutdown()
