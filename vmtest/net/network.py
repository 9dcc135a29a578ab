"""Virtual networks: one ``vde_switch`` (hub) per VLAN, NixOS addressing.

Addressing follows the NixOS test driver: nodes are numbered 1..254 in the
alphabetical order of their names; on VLAN ``v`` node ``n`` has the MAC
``52:54:00:12:vv:nn`` (two hex digits each), IPv4 ``192.168.v.n/24`` and
IPv6 ``2001:db8:v::n/64``. In the guest the NICs are ``eth1``, ``eth2``, ...
in the order of the node's ``vlans``. Every node's ``/etc/hosts`` lists every
node by its first VLAN's addresses.

The address plan is pure (unit-tested); :class:`Switch` owns one vde_switch
process, started with a pipe on stdin (vde_switch exits on EOF, so it dies
with us) and proven ready by a ``showinfo`` round trip on its management socket.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtest.core.errors import ConfigError, LaunchError
from vmtest.core.log import log
from vmtest.config.virtualisation import Interface
from vmtest.core.proc import kill_group, spawn


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
) -> dict[str, NodePlan]:
    """The address plan for ``{node name: its vlans}`` plus each node's named ``interfaces``.

    NICs of ``vlans`` come first (eth1, eth2, ...), then the named interfaces in name order;
    named interfaces get addresses only with ``assign_ip``.
    """
    names = sorted(nodes)
    if len(names) > 254:
        raise ConfigError("nodes", len(names), "at most 254 nodes fit one test network")
    result = {}
    for number, name in enumerate(names, start=1):
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
    return Nic(vlan, index, f"52:54:00:12:{vlan:02x}:{number:02x}",
               f"192.168.{vlan}.{number}", f"2001:db8:{vlan:x}::{number:x}")


def hosts_file(plans: Mapping[str, NodePlan]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for p in sorted(plans.values(), key=lambda p: p.number):
        if p.primary_ipv4:
            lines.append(f"{p.primary_ipv4} {p.name}")
            lines.append(f"{p.primary_ipv6} {p.name}")
    return "\n".join(lines) + "\n"


def rename_by_mac(mac: str, new_name: str) -> list[str]:
    """Guest shell lines: give the interface with MAC ``mac`` the name ``new_name`` (or fail saying so)."""
    return [
        f"dev=$(for d in /sys/class/net/*; do if [ \"$(cat $d/address)\" = {mac} ]; then basename $d; fi; done)",
        f'[ -n "$dev" ] || {{ echo "vmtest-setup: no interface with MAC {mac}" >&2; exit 1; }}',
        f'ip link set dev "$dev" name {new_name}',
    ]


def setup_script(node: NodePlan, plans: Mapping[str, NodePlan]) -> str:
    """Shell run in the guest at boot (vmtest-setup.service): NIC names, addresses, /etc/hosts."""
    lines = ["set -eu"]
    # Rename in two passes (kernel eth0 may have to become eth1 while eth1 exists).
    for nic in node.nics:
        lines += rename_by_mac(nic.mac, f"vmtest{nic.index}")
    for nic in node.nics:
        lines += [
            f"ip link set dev vmtest{nic.index} name {nic.name}",
            f"ip link set dev {nic.name} up",
        ]
        if nic.assign_ip:
            lines += [
                f"ip addr add {nic.ipv4}/24 dev {nic.name}",
                f"ip -6 addr add {nic.ipv6}/64 dev {nic.name} nodad",
            ]
    lines.append("cat > /etc/hosts <<'VMTEST_HOSTS'\n" + hosts_file(plans) + "VMTEST_HOSTS")
    return "\n".join(lines) + "\n"


def nic_args(nics: Sequence[Nic], sockets: Mapping[int, Path]) -> list[str]:
    """QEMU argv: one virtio NIC per VLAN, plugged into that VLAN's switch."""
    args: list[str] = []
    for nic in nics:
        args += [
            "-netdev", f"vde,id=vlan{nic.vlan},sock={sockets[nic.vlan]}",
            "-device", f"virtio-net-pci,netdev=vlan{nic.vlan},mac={nic.mac},id=nic-vlan{nic.vlan}",
        ]
    return args


class Switch:
    """One VLAN's vde_switch (a hub), owned from start() to stop()."""

    def __init__(self, vlan: int, directory: Path, logger: logging.Logger) -> None:
        self.vlan = vlan
        self.directory = directory
        self.logger = logger
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "switch"

    @property
    def mgmt(self) -> Path:
        return self.directory / "mgmt"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = ["vde_switch", "--sock", str(self.socket), "--hub", "--mgmt", str(self.mgmt), "--dirmode", "0700"]
        self.process = spawn(argv, logger=self.logger, stdout=self.directory / "switch.log", stdin_pipe=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                out = (self.directory / "switch.log").read_text(errors="replace")[-2000:]
                raise LaunchError(f"vlan{self.vlan}", "starting vde_switch",
                                  f"exited with status {self.process.returncode}: {shlex.join(argv)}\n{out}")
            if self._showinfo():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"vlan{self.vlan}", "starting vde_switch", f"no answer within {timeout:.0f}s")
            time.sleep(0.02)
        log(self.logger, f"vlan{self.vlan}: switch up ({self.socket})")

    def _showinfo(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.mgmt))
                sock.sendall(b"showinfo\n")
                data = b""
                while b"1000 Success" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin is not None:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass
            kill_group(self.process)
            self.process = None
