"""The address plan of a test network (pure; NixOS addressing).

Nodes are numbered 1..254 in the alphabetical order of their names; on VLAN
``v`` node ``n`` has the MAC, IPv4 and IPv6 addresses of
:mod:`vmtest.core.contract` (``52:54:00:12:vv:nn``, ``192.168.v.n/24``,
``2001:db8:v::n/64``). In the guest the NICs are ``eth1``, ``eth2``, ... in
the order of the node's ``vlans``, then the named ``interfaces``. Every
node's ``/etc/hosts`` lists every node by its first addressed NIC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.records import Interface
from vmtest.core.contract import find_nic, ip_batch, vlan_ipv4, vlan_ipv6, vlan_mac
from vmtest.core.errors import ConfigError


@dataclass(frozen=True)
class Nic:
    """One network interface of one node."""

    vlan: int
    index: int  # position among the node's NICs (1-based); the guest name is eth<index> unless named
    mac: str
    ipv4: str
    ipv6: str
    ifname: str = ""  # a name from virtualisation.interfaces
    assign_ip: bool = True

    @property
    def name(self) -> str:
        return self.ifname or f"eth{self.index}"


@dataclass(frozen=True)
class NodePlan:
    name: str
    number: int
    nics: tuple[Nic, ...]

    @property
    def _addressed(self) -> list[Nic]:
        return [nic for nic in self.nics if nic.assign_ip]

    @property
    def primary_ipv4(self) -> str | None:
        return self._addressed[0].ipv4 if self._addressed else None

    @property
    def primary_ipv6(self) -> str | None:
        return self._addressed[0].ipv6 if self._addressed else None


def plan(
    nodes: Mapping[str, Sequence[int]],
    interfaces: Mapping[str, Mapping[str, Interface]] | None = None,
    first: int = 1,
) -> dict[str, NodePlan]:
    """The address plan for ``{node name: its vlans}`` plus each node's named ``interfaces``.

    NICs of ``vlans`` come first (eth1, eth2, ...), then the named interfaces in name order;
    named interfaces get addresses only with ``assign_ip``. Nodes are numbered from ``first``
    (a machine added at run time gets the next free number).
    """
    names = sorted(nodes)
    if len(names) + first - 1 > 254:
        raise ConfigError("nodes", len(names) + first - 1, "at most 254 nodes fit one test network")
    result = {}
    for number, name in enumerate(names, start=first):
        nics = []
        for index, vlan in enumerate(nodes[name], start=1):
            if not isinstance(vlan, int) or isinstance(vlan, bool) or not 1 <= vlan <= 254:
                raise ConfigError(f"{name}: virtualisation.vlans", vlan, "VLAN numbers are integers 1..254")
            nics.append(_nic(vlan, index, number))
        for ifname, iface in sorted((interfaces or {}).get(name, {}).items()):
            nic = _nic(iface.vlan, len(nics) + 1, number)
            nics.append(dataclasses.replace(nic, ifname=ifname, assign_ip=iface.assign_ip))
        vlans_used = [nic.vlan for nic in nics]
        if len(set(vlans_used)) != len(vlans_used):
            raise ConfigError(f"{name}: virtualisation.interfaces", vlans_used, "two NICs on the same VLAN")
        result[name] = NodePlan(name, number, tuple(nics))
    return result


def _nic(vlan: int, index: int, number: int) -> Nic:
    return Nic(vlan, index, vlan_mac(vlan, number), vlan_ipv4(vlan, number), vlan_ipv6(vlan, number))


def hosts_file(plans: Mapping[str, NodePlan]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for p in sorted(plans.values(), key=lambda p: p.number):
        if p.primary_ipv4:
            lines.append(f"{p.primary_ipv4} {p.name}")
            lines.append(f"{p.primary_ipv6} {p.name}")
    return "\n".join(lines) + "\n"


def setup_script(node: NodePlan) -> str:
    """Shell run in the guest at boot (vmtest-setup.service): the node's NIC names and addresses
    (``/etc/hosts``, which names the other nodes, is :func:`hosts_file`, applied apart). The NICs are
    found by MAC with shell builtins, then one ip process renames and addresses them all."""
    lines = ["set -eu"]
    commands = []
    # Rename in two passes (kernel eth0 may have to become eth1 while eth1 exists).
    for nic in node.nics:
        lines += find_nic(nic.mac, f"nic{nic.index}")
        commands.append(f"link set dev ${{nic{nic.index}}} name vmtest{nic.index}")
    for nic in node.nics:
        commands += [f"link set dev vmtest{nic.index} name {nic.name}", f"link set dev {nic.name} up"]
        if nic.assign_ip:
            commands += [f"addr add {nic.ipv4}/24 dev {nic.name}", f"addr add {nic.ipv6}/64 dev {nic.name} nodad"]
    if commands:
        lines += ip_batch(commands)
    return "\n".join(lines) + "\n"


def nic_args(nics: Sequence[Nic], sockets: Mapping[int, Path]) -> list[str]:
    """QEMU argv: one virtio NIC per VLAN, plugged into that VLAN's switch."""
    args: list[str] = []
    for nic in nics:
        args += [
            "-netdev",
            f"vde,id=vlan{nic.vlan},sock={sockets[nic.vlan]}",
            "-device",
            f"virtio-net-pci,netdev=vlan{nic.vlan},mac={nic.mac},id=nic-vlan{nic.vlan}",
        ]
    return args
