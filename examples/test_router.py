"""Three machines on two VLANs: the client reaches the server only through the router.

Node numbers follow the alphabetical order of the names: client=1, router=2,
server=3, so the router is 192.168.1.2 on VLAN 1 and 192.168.2.2 on VLAN 2.
"""

import pytest

from vmtest import MachineConfig

client = MachineConfig(packages=["curl"], virtualisation={"vlans": [1]})
router = MachineConfig(
    virtualisation={"vlans": [1, 2]}, files={"/etc/sysctl.d/50-router.conf": "net.ipv4.ip_forward=1\n"}
)
server = MachineConfig(
    packages=["nginx-light"],
    services=["nginx.service"],
    files={"/var/www/html/index.html": "routed hello\n"},
    virtualisation={"vlans": [2]},
)


@pytest.mark.vmtest(nodes={"client": client, "router": router, "server": server})
def test_router(vms, client, router, server):
    vms.start_all()
    client.succeed("ip route add 192.168.2.0/24 via 192.168.1.2")
    server.succeed("ip route add 192.168.1.0/24 via 192.168.2.2")
    # sysctl.d is applied by systemd-sysctl.service, which a cold boot (--vm-snapshots=off) may not have run yet
    # when the backdoor answers; a machine restored from its snapshot has it done
    router.wait_for_unit("systemd-sysctl.service")
    assert router.succeed("sysctl -n net.ipv4.ip_forward").strip() == "1"
    server.wait_for_unit("nginx.service")
    server.wait_for_open_port(80)
    with vms.subtest("the client reaches the server through the router"):
        assert client.succeed("curl -sf --max-time 10 http://server/") == "routed hello\n"
        # The client is not on VLAN 2 itself.
        assert "192.168.2." not in client.succeed("ip -4 addr show")
    with vms.subtest("cutting the router's links breaks it"):
        router.block()
        client.fail("curl -sf --max-time 5 http://server/")
    with vms.subtest("restoring them fixes it"):
        router.unblock()
        client.wait_until_succeeds("curl -sf --max-time 5 http://server/", timeout=60)
