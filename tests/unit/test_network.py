"""The address plan and the guest set-up script (pure parts of vmtest.network)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmtest.core.errors import ConfigError
from vmtest.net.plan import hosts_file, nic_args, plan, setup_script


def test_nodes_are_numbered_alphabetically_with_nixos_addresses():
    plans = plan({"server": [1], "client": [1], "router": [1, 2]})
    assert [(p.name, p.number) for p in sorted(plans.values(), key=lambda p: p.number)] == [
        ("client", 1),
        ("router", 2),
        ("server", 3),
    ]
    router = plans["router"]
    assert [(n.name, n.vlan, n.mac, n.ipv4, n.ipv6) for n in router.nics] == [
        ("eth1", 1, "52:54:00:12:01:02", "192.168.1.2", "2001:db8:1::2"),
        ("eth2", 2, "52:54:00:12:02:02", "192.168.2.2", "2001:db8:2::2"),
    ]


def test_macs_are_hex_so_big_numbers_stay_valid():
    plans = plan({f"n{i:03d}": [200] for i in range(1, 21)})
    assert plans["n020"].nics[0].mac == "52:54:00:12:c8:14"
    assert plans["n020"].nics[0].ipv4 == "192.168.200.20"
    assert plans["n020"].nics[0].ipv6 == "2001:db8:c8::14"


@pytest.mark.parametrize("vlan", [0, 255, "1", True])
def test_bad_vlan_numbers_are_rejected(vlan):
    with pytest.raises(ConfigError) as info:
        plan({"a": [vlan]})
    assert "vlans" in str(info.value)


def test_hosts_file_lists_every_node_by_primary_address():
    plans = plan({"server": [2], "client": [1], "router": [1, 2]})
    text = hosts_file(plans)
    assert "192.168.1.1 client\n" in text
    assert "192.168.1.2 router\n" in text  # primary = first VLAN listed
    assert "192.168.2.3 server\n" in text
    assert "2001:db8:2::3 server\n" in text
    assert text.startswith("127.0.0.1 localhost\n")


def test_nic_args_plug_each_nic_into_its_vlan_switch():
    plans = plan({"r": [1, 2]})
    args = nic_args(plans["r"].nics, {1: Path("/s/v1"), 2: Path("/s/v2")})
    assert args == [
        "-netdev",
        "vde,id=vlan1,sock=/s/v1",
        "-device",
        "virtio-net-pci,netdev=vlan1,mac=52:54:00:12:01:01,id=nic-vlan1",
        "-netdev",
        "vde,id=vlan2,sock=/s/v2",
        "-device",
        "virtio-net-pci,netdev=vlan2,mac=52:54:00:12:02:01,id=nic-vlan2",
    ]


def test_setup_script_is_valid_shell_and_renames_in_two_passes():
    plans = plan({"r": [1, 2], "x": [1]})
    script = setup_script(plans["r"])
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    # Every interface gets a temporary name before any gets its final one.
    last_tmp = script.rindex("name vmtest2")
    first_final = script.index("name eth1")
    assert last_tmp < first_final
    assert "addr add 192.168.2.1/24 dev eth2" in script
    assert "/etc/hosts" not in script  # the other nodes' names are applied apart (they are not in a snapshot)
    assert "192.168.1.2 x" in hosts_file(plans)


def test_named_interfaces_follow_vlan_nics_and_get_addresses_only_when_asked():
    from vmtest.config.virtualisation import Interface

    plans = plan({"a": [1], "b": []}, {"b": {"lan0": Interface(2, assign_ip=True), "wan0": Interface(3)}})
    b = plans["b"]
    assert [(n.name, n.vlan, n.assign_ip) for n in b.nics] == [("lan0", 2, True), ("wan0", 3, False)]
    assert b.nics[0].mac == "52:54:00:12:02:02"
    assert b.primary_ipv4 == "192.168.2.2"
    script = setup_script(b)
    assert "link set dev vmtest1 name lan0" in script
    assert "addr add 192.168.2.2/24 dev lan0" in script
    assert "dev wan0" in script and "192.168.3.2" not in script
    assert "192.168.2.2 b" in hosts_file(plans)


def test_a_node_without_addresses_is_not_in_hosts():
    from vmtest.config.virtualisation import Interface

    plans = plan({"a": [1], "quiet": []}, {"quiet": {"lan0": Interface(1)}})
    assert "quiet" not in hosts_file(plans)
