"""The per-boot guest set-up script: pure text, checked for content and shell syntax."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.core.contract import USER_NIC_MAC
from vmtest.net.plan import plan, setup_script
from vmtest.vm.guestsetup import after_restore, before_save, script


def _valid_sh(text: str, shell: str = "sh") -> None:
    subprocess.run([shell, "-n"], input=text, text=True, check=True)


def test_the_least_a_script_does_is_naming_the_machine() -> None:
    text = script(MachineConfig(), "box-1")
    _valid_sh(text)
    assert text.splitlines() == [
        "set -eu",
        "echo box-1 > /proc/sys/kernel/hostname",
        "echo box-1 > /etc/hostname",
        ": > /run/vmtest-setup.done",  # the last step: the host's cheap check that all went well
    ]


def test_mounts_resize_certs(tmp_path: Path) -> None:
    cfg = MachineConfig(
        virtualisation={
            "shared_directories": {"data": {"source": str(tmp_path), "target": "/mnt/my data"}},
            "msize": 65536,
            "file_systems": {
                "/mnt/scratch": {"device": "tmpfs", "fs_type": "tmpfs", "options": ["size=16m", "mode=0700"]}
            },
            "disk_size": 2048,
        }
    )
    text = script(cfg, "m1", grow_root=True, certs=True)
    _valid_sh(text)
    assert "mount -t 9p -o trans=virtio,version=9p2000.L,msize=65536,cache=none data '/mnt/my data'" in text
    assert "mount -t tmpfs -o size=16m,mode=0700 tmpfs /mnt/scratch" in text
    assert 'resize2fs "$root_dev"' in text
    assert "/etc/ssl/certs/ca-certificates.crt" in text


def test_user_nic_is_eth0_around_the_vlan_renames() -> None:
    cfg = MachineConfig(virtualisation={"forward_ports": [{"host_port": 2222, "guest_port": 22}]})
    text = script(cfg, "m1", network="set -eu\nip link set dev vmtest1 name eth1\n")
    _valid_sh(text)
    lines = text.splitlines()
    assert lines[0] == "set -eu" and lines.count("set -eu") == 1
    first = next(i for i, line in enumerate(lines) if "name vmtest0" in line)
    vlan = lines.index("ip link set dev vmtest1 name eth1")
    final = lines.index("link set dev vmtest0 name eth0")
    assert first < vlan < final
    assert "addr add 10.0.2.15/24 dev eth0" in lines
    assert not any("default" in line for line in lines)  # restricted: no route out


def _run_as_guest(text: str, nics: dict[str, str], tmp_path: Path) -> str:
    """Run the set-up ``text`` under /bin/sh in new network, mount and UTS namespaces whose only NICs
    are veth ends named and addressed as ``nics`` (kernel name -> MAC), /etc/hostname and /run stand-ins
    mounted over the real ones; the NICs' state (``ip -br addr``) afterwards."""
    hostname = tmp_path / "hostname"
    hostname.write_text("")
    prologue = [
        "set -e",
        "mount -t sysfs sysfs /sys",
        f"mount --bind {hostname} /etc/hostname",
        "mount -t tmpfs run /run",
    ]
    for i, (name, mac) in enumerate(nics.items()):
        prologue += [f"ip link add {name} address {mac} type veth peer name peer{i}"]
    guest = tmp_path / "setup.sh"
    guest.write_text(text)
    run = [*prologue, f"sh {guest}", "test -e /run/vmtest-setup.done", "ip -br -4 addr show up", "cat /etc/hostname"]
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--uts", "--propagation", "private", "sh", "-c", "\n".join(run)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare for network namespaces"
)


@needs_namespaces
def test_the_script_names_and_addresses_the_nics_it_finds_by_mac(tmp_path: Path) -> None:
    """The whole script, run by a real shell and ip on veth NICs whose kernel names are all wrong: the
    NICs are found by MAC, renamed in two passes (the user NIC is eth0 at the end) and addressed."""
    nodes = plan({"r": [1, 2]})
    cfg = MachineConfig(virtualisation={"vlans": [1, 2], "forward_ports": [{"host_port": 2222, "guest_port": 22}]})
    text = script(cfg, "r", network=setup_script(nodes["r"]))
    macs = {nic.name: nic.mac for nic in nodes["r"].nics}
    kernel_names = {"eth0": macs["eth2"], "eth1": USER_NIC_MAC, "eth2": macs["eth1"]}
    out = _run_as_guest(text, kernel_names, tmp_path)
    addresses = {line.split("@")[0]: line.split()[2] for line in out.splitlines() if line.startswith("eth")}
    assert addresses == {"eth0": "10.0.2.15/24", "eth1": "192.168.1.1/24", "eth2": "192.168.2.1/24"}
    assert out.splitlines()[-1] == "r"


@needs_namespaces
def test_a_missing_nic_fails_the_script_naming_its_mac(tmp_path: Path) -> None:
    nodes = plan({"r": [1]})
    text = script(MachineConfig(), "r", network=setup_script(nodes["r"]))
    with pytest.raises(AssertionError, match="no interface with MAC 52:54:00:12:01:01"):
        _run_as_guest(text, {"eth0": "52:54:00:aa:bb:cc"}, tmp_path)


def test_hosts_come_last_and_after_restore_remounts_shares(tmp_path: Path) -> None:
    cfg = MachineConfig(
        virtualisation={"shared_directories": {"data": {"source": str(tmp_path), "target": "/mnt/data"}}}
    )
    hosts = "127.0.0.1 localhost\n192.168.1.2 server\n"
    full = script(cfg, "client", network="set -eu\nip link set dev vmtest1 name eth1\n", hosts=hosts)
    _valid_sh(full)
    assert full.rstrip().endswith(
        "printf %s '127.0.0.1 localhost\n192.168.1.2 server\n' > /etc/hosts\n: > /run/vmtest-setup.done"
    )
    assert "/etc/hosts" not in script(cfg, "client")  # the identity part alone
    late = after_restore(cfg, 1795790000.5, hosts)
    _valid_sh(late, "bash")  # run by the backdoor's bash
    assert late.startswith("bb=; [[ -x /bin/busybox ]] && bb=/bin/busybox\n$bb date -u -s @1795790001 ")
    xchg = '[[ $(< /proc/mounts) == *" /tmp/xchg "* ]] || { [[ -d /tmp/xchg ]] || $bb mkdir -p /tmp/xchg; $bb mount'
    assert "{ " + xchg in late and late.index("2>&1 &\n") > late.index(xchg)  # in the background
    assert "mkdir -p /mnt/data; $bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=16384,cache=none data" in late
    assert "192.168.1.2 server" in late
    save = before_save(cfg)
    _valid_sh(save)
    assert save.index("$bb umount /mnt/data") < save.index("$bb umount /tmp/xchg")
