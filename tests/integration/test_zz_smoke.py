import pytest

from vmtest import MachineConfig


@pytest.mark.vmtest(nodes={"server": MachineConfig(), "client": MachineConfig()})
def test_two(server, client, vms):
    vms.start_all()
    assert server.succeed("echo hi") == "hi\n"
    assert "server" in client.succeed("getent hosts server")
    assert "192.168.1.2" in client.succeed("getent ahostsv4 server")
    client.succeed("ip -4 addr show eth1 | grep -q 192.168.1.1/24")


def test_factory(vm_factory):
    vm = vm_factory("fact-1")
    assert vm.succeed("hostname").strip() == "fact-1"
    vm.shutdown()
    assert vm.state.value == "stopped"
    assert vm.succeed("echo again") == "again\n"
