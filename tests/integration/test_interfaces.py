"""Named interfaces (virtualisation.interfaces) and polling conditions, on a real two-node network."""

from __future__ import annotations

import pytest

from vmtest import MachineConfig, PollingConditionFailed

ECHO = {"echo.service": "[Service]\nExecStart=/bin/sh -c 'while true; do hostname | nc -N -l 7000; done'\n"}

SERVER = MachineConfig(
    units=ECHO,
    services=["echo.service"],
    virtualisation={
        "interfaces": {"lan0": {"vlan": 1, "assign_ip": True}, "side0": {"vlan": 2}},
    },
)
CLIENT = MachineConfig(virtualisation={"vlans": [1, 2]})

pytestmark = pytest.mark.vmtest(nodes={"server": SERVER, "client": CLIENT}, scope="module")


def test_named_interfaces(vms, server, client) -> None:
    vms.start_all()
    # client is node 1, server node 2 (alphabetical); lan0 has the vlans addressing, side0 none
    assert server.succeed("ip -o -4 addr show dev lan0").split()[3] == "192.168.1.2/24"
    assert "2001:db8:1::2/64" in server.succeed("ip -o -6 addr show dev lan0")
    assert server.succeed("ip -o -4 addr show dev side0") == ""
    assert server.succeed("cat /sys/class/net/side0/address").strip() == "52:54:00:12:02:02"
    assert server.succeed("cat /sys/class/net/side0/operstate").strip() == "up"
    assert client.succeed("getent ahostsv4 server").split()[0] == "192.168.1.2"
    server.wait_for_open_port(7000, timeout=120)
    # (the port probe reads the listening sockets and does not connect; the retry covers the restart
    # gap of the echo loop, should anything else have connected)
    assert client.wait_until_succeeds("nc -w 10 server 7000 </dev/null | grep -x server", timeout=60) == "server\n"
    # side0 is on VLAN 2 without an address: the same service is not reachable at 192.168.2.2
    client.wait_until_succeeds("nc -z -w 5 192.168.1.2 7000", timeout=60)
    client.fail("nc -z -w 3 192.168.2.2 7000")


def test_polling_condition(vms, server, client) -> None:
    @vms.polling_condition(seconds_interval=0)
    def echo_running():
        "the echo service keeps running"
        server.succeed("systemctl is-active -q echo.service")

    echo_running.wait(timeout=60)
    with echo_running:
        client.succeed("true")  # checked before this command, holds
        server.succeed("systemctl stop echo.service")
        with pytest.raises(PollingConditionFailed) as info:
            client.succeed("true")
    message = str(info.value)
    assert "the echo service keeps running" in message and "client: 'true'" in message
    assert "systemctl is-active" in message
    # outside the block nothing is checked
    client.succeed("true")
    server.succeed("systemctl start echo.service")
    echo_running.wait(timeout=60)
