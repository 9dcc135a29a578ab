"""Option validation: the seed's assertions and warnings, and our own checks (no QEMU)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.config.virtualisation import ForwardPort, FrozenMap, Virtualisation
from vmtest.core.errors import ConfigError
from vmtest.vm.disks import check_host


def virt(**options) -> Virtualisation:
    return MachineConfig(virtualisation=options).virtualisation


# -- the seed's assertions ---------------------------------------------------------


def test_seed_guest_forwarding_is_tcp_only() -> None:
    with pytest.raises(ConfigError) as info:
        virt(
            forward_ports=[
                {"from": "guest", "proto": "udp", "guest_address": "10.0.2.100", "guest_port": 53, "host_port": 5353}
            ]
        )
    assert info.value.field.endswith(".proto")
    assert "only TCP" in str(info.value) and "proto='tcp'" in str(info.value)


@pytest.mark.parametrize("address", ["192.168.1.5", "10.0.3.1", ""])
def test_seed_guest_forwarding_address_inside_user_net(address: str) -> None:
    with pytest.raises(ConfigError) as info:
        virt(forward_ports=[{"from": "guest", "guest_address": address, "guest_port": 80, "host_port": 8080}])
    assert info.value.field.endswith(".guest_address")
    assert "10.0.2.0/24" in str(info.value)


def test_seed_changed_initrd_without_direct_boot() -> None:
    with pytest.raises(ConfigError) as info:
        virt(direct_boot=False, direct_boot_initrd="/boot/initrd.img")
    assert info.value.field == "virtualisation.direct_boot_initrd"
    assert "not used when direct_boot is off" in str(info.value)


def test_seed_warning_direct_boot_with_boot_loader() -> None:
    with pytest.warns(UserWarning, match="never runs the boot loader"):
        v = virt(use_boot_loader=True, direct_boot=True)
    assert v.direct_boot is True


# -- our own checks ----------------------------------------------------------------------


def test_unrestricted_network_warns() -> None:
    with pytest.warns(UserWarning, match="restrict_network=False"):
        virt(restrict_network=False, forward_ports=[{"host_port": 8080, "guest_port": 80}])


def test_defaults_raise_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = virt(forward_ports=[{"host_port": 8080, "guest_port": 80}])
    assert v.restrict_network is True


@pytest.mark.parametrize("port", [0, 65536, -1, "80", True])
def test_port_out_of_range(port) -> None:
    with pytest.raises(ConfigError) as info:
        virt(forward_ports=[{"host_port": port, "guest_port": 80}])
    assert info.value.field.endswith(".host_port")


def test_duplicate_drive_names() -> None:
    with pytest.raises(ConfigError, match="unique"):
        virt(qemu={"drives": [{"file": "/a", "name": "data"}, {"file": "/b", "name": "data"}]})


def test_drive_names_of_our_own_are_reserved() -> None:
    with pytest.raises(ConfigError, match="unique"):
        virt(qemu={"drives": [{"file": "/a", "name": "root"}]})


def test_shared_directory_source_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        virt(shared_directories={"data": {"source": str(tmp_path / "missing"), "target": "/mnt/data"}})
    assert "does not exist" in str(info.value) and "create it" in str(info.value)


def test_shared_directory_tag_and_target(tmp_path: Path) -> None:
    v = virt(shared_directories={"data": {"source": str(tmp_path), "target": "/mnt/data/"}})
    assert v.shared_directories["data"].target == "/mnt/data"
    assert v.shared_directories["data"].security_model == "none"
    with pytest.raises(ConfigError, match="reserved"):
        virt(shared_directories={"xchg": {"source": str(tmp_path), "target": "/x"}})
    with pytest.raises(ConfigError, match="absolute guest path"):
        virt(shared_directories={"d": {"source": str(tmp_path), "target": "mnt"}})


def test_unknown_disk_interface_with_hint() -> None:
    with pytest.raises(ConfigError) as info:
        virt(qemu={"disk_interface": "sccsi"})
    assert info.value.field == "virtualisation.qemu.disk_interface"
    assert "'virtio', 'scsi', 'ide'" in str(info.value) and "did you mean 'scsi'" in str(info.value)


def test_ide_holds_four_disks() -> None:
    virt(qemu={"disk_interface": "ide"}, empty_disk_images=[1, 2, 3])
    with pytest.raises(ConfigError, match="4 IDE slots"):
        virt(qemu={"disk_interface": "ide"}, empty_disk_images=[1, 2, 3, 4])


def test_unknown_qemu_option_with_hint() -> None:
    with pytest.raises(ConfigError) as info:
        virt(qemu={"guestAgent": False})
    assert info.value.field == "virtualisation.qemu.guestAgent"
    assert "did you mean 'guest_agent'" in str(info.value)


def test_unknown_forward_key_with_hint() -> None:
    with pytest.raises(ConfigError, match="did you mean 'guest_port'"):
        virt(forward_ports=[{"host_port": 1, "guest_prot": 2}])


def test_forward_ports_seed_nested_form() -> None:
    v = virt(forward_ports=[{"from": "host", "host": {"port": 2222}, "guest": {"port": 22}}])
    assert v.forward_ports == (ForwardPort(host_port=2222, guest_port=22),)
    assert v.forward_ports[0].host_address == "127.0.0.1"
    assert v.user_network


def test_forwarding_a_host_port_twice() -> None:
    with pytest.raises(ConfigError, match="forwarded twice"):
        virt(forward_ports=[{"host_port": 1, "guest_port": 2}, {"host_port": 1, "guest_port": 3}])


def test_vlans_default_depends_on_interfaces() -> None:
    assert virt().vlans == (1,)
    v = virt(interfaces={"lan0": {"vlan": 2, "assign_ip": True}})
    assert v.vlans == ()
    assert v.interfaces["lan0"].assign_ip is True
    with pytest.raises(ConfigError, match="same VLAN"):
        virt(vlans=[2], interfaces={"lan0": {"vlan": 2}})
    with pytest.raises(ConfigError, match="eth<N> names"):
        virt(interfaces={"eth3": {"vlan": 2}})


def test_disk_image_placeholders() -> None:
    assert virt().disk_image == "{state_dir}/{name}.qcow2"
    assert virt(disk_image=None).disk_image is None
    with pytest.raises(ConfigError, match="placeholder"):
        virt(disk_image="/tmp/{machine}.qcow2")


def test_sizes_validated() -> None:
    with pytest.raises(ConfigError, match="disk_size"):
        virt(disk_size=10)
    with pytest.raises(ConfigError, match="empty_disk_images"):
        virt(empty_disk_images=[0])
    with pytest.raises(ConfigError, match="empty_disk_images"):
        virt(empty_disk_images=64)


def test_image_packages_follow_the_options() -> None:
    assert "qemu-guest-agent" in MachineConfig().image_inputs()["packages"]
    assert (
        "qemu-guest-agent"
        not in MachineConfig(virtualisation={"qemu": {"guest_agent": False}}).image_inputs()["packages"]
    )
    assert "e2fsprogs" in MachineConfig(virtualisation={"disk_size": 4096}).image_inputs()["packages"]


def test_options_are_hashable_and_comparable(tmp_path: Path) -> None:
    a = MachineConfig(
        virtualisation={
            "shared_directories": {"d": {"source": str(tmp_path), "target": "/d"}},
            "qemu": {"drives": [{"file": "/x", "drive_extra_opts": {"cache": "none"}}]},
        }
    )
    b = MachineConfig(
        virtualisation={
            "shared_directories": {"d": {"source": str(tmp_path), "target": "/d"}},
            "qemu": {"drives": [{"file": "/x", "drive_extra_opts": {"cache": "none"}}]},
        }
    )
    assert a == b and hash(a) == hash(b)
    assert isinstance(a.virtualisation.shared_directories, FrozenMap)


# -- host checks at start (this host's facts, no QEMU started) ---------------------------


def test_memory_over_the_hosts_available_memory() -> None:
    with pytest.raises(ConfigError) as info:
        check_host(MachineConfig(virtualisation={"memory_size": 1 << 20}))
    assert info.value.field == "virtualisation.memory_size"
    assert "available memory" in str(info.value)


def test_missing_qemu_binary() -> None:
    with pytest.raises(ConfigError) as info:
        check_host(MachineConfig(virtualisation={"qemu": {"binary": "qemu-system-does-not-exist"}}))
    assert info.value.field == "virtualisation.qemu.binary"
    assert "./run setup" in str(info.value)


def test_disk_size_default_follows_the_image() -> None:
    assert virt().disk_size is None
    assert virt().root_disk_mib(700) == 1024
    assert virt().root_disk_mib(1500) == 1500  # an image bigger than 1 GiB needs no disk_size
    assert virt(disk_size=2048).root_disk_mib(1500) == 2048
    assert virt(disk_size=1024).root_disk_mib(1500) == 1024  # explicit: prepare() reports it as too small
