"""What is in a booted snapshot's key, and what is not (pure; no QEMU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vmtest import MachineConfig
from vmtest.image import BootImage
from vmtest.net.plan import nic_args, plan, setup_script
from vmtest.vm.guestsetup import script
from vmtest.vm.snapshot import disk_sizes, key_argv, snapshot_key

IMAGE = BootImage("i" * 32, Path("/cache/images/i/root.qcow2"), Path("/k/vmlinux"), Path("/k/initrd"), "6.1", 1024)


def key(
    config: MachineConfig | None = None,
    *,
    image: BootImage = IMAGE,
    accel: str = "tcg",
    qemu: str = "QEMU emulator version 7.2.22",
    network: tuple[str, ...] = (),
    host: str = "",
    identity: str = "",
) -> str:
    config = config or MachineConfig()
    argv = key_argv(config, image, accel, network)
    return snapshot_key(
        argv, image.key, qemu, accel, host, disk_sizes(config, image), identity, image_build=image.build_id
    )


def vlan_key_args(names: list[str], node: str, vlans: tuple[int, ...] = (1,)) -> tuple[str, ...]:
    plans = plan({n: vlans for n in names})
    return tuple(nic_args(plans[node].nics, {v: Path(f"/@vlan{v}@") for v in vlans}))


def test_same_config_same_key() -> None:
    assert key() == key(MachineConfig())


def test_the_caches_directory_is_not_in_the_key_but_the_entries_are() -> None:
    def in_cache(root: str, kernel_key: str = "k1") -> str:
        image = BootImage(
            "i" * 32,
            Path(f"{root}/images/{'i' * 32}/root.qcow2"),
            Path(f"{root}/kernels/{kernel_key}/vmlinux"),
            Path(f"{root}/kernels/{kernel_key}/initrd"),
            "6.1",
            1024,
        )
        argv = key_argv(MachineConfig(), image, "tcg", (), Path(root))
        assert not any(root in arg for arg in argv), argv
        return snapshot_key(argv, image.key, "q", "tcg")

    assert in_cache("/root/.cache/vmtest") == in_cache("/home/ci/.cache/vmtest") == in_cache("/tmp/x/cache/")
    assert in_cache("/root/.cache/vmtest") != in_cache("/root/.cache/vmtest", kernel_key="k2")


def test_everything_that_shapes_the_devices_or_the_boot_is_in_the_key() -> None:
    base = key()
    changed = {
        "memory": key(MachineConfig(virtualisation={"memory_size": 2048})),
        "cores": key(MachineConfig(virtualisation={"cores": 2})),
        "disk size": key(MachineConfig(virtualisation={"disk_size": 4096})),
        "empty disks": key(MachineConfig(virtualisation={"empty_disk_images": [64]})),
        "empty disk size": key(MachineConfig(virtualisation={"empty_disk_images": [128]})),
        "disk interface": key(MachineConfig(virtualisation={"qemu": {"disk_interface": "scsi"}})),
        "display": key(MachineConfig(virtualisation={"resolution": (800, 600)})),
        "no display": key(MachineConfig(virtualisation={"graphics": False})),
        "kernel parameters": key(MachineConfig(kernel_params=["quiet"])),
        "extra QEMU options": key(MachineConfig(virtualisation={"qemu": {"options": ["-smbios type=1,serial=x"]}})),
        "guest agent": key(MachineConfig(virtualisation={"qemu": {"guest_agent": False}})),
        "user NIC": key(MachineConfig(virtualisation={"forward_ports": [{"host_port": 8080, "guest_port": 80}]})),
        "image": key(image=BootImage("j" * 32, IMAGE.disk, IMAGE.kernel, IMAGE.initrd, "6.1", 1024)),
        "image build (a rebuild of the same key)": key(image=replace(IMAGE, build_id="0123456789abcdef")),
        "kernel": key(image=BootImage(IMAGE.key, IMAGE.disk, Path("/k2/vmlinux"), IMAGE.initrd, "6.1", 1024)),
        "QEMU version": key(qemu="QEMU emulator version 8.2.0"),
        "accelerator": key(accel="kvm"),
        "host CPU (KVM)": key(accel="kvm", host="other-cpu"),
        "a VLAN NIC": key(network=vlan_key_args(["a", "b"], "a")),
        "the identity set up at boot": key(identity="echo web > /proc/sys/kernel/hostname"),
    }
    for what, k in changed.items():
        assert k != base, what
    assert len(set(changed.values())) == len(changed), "two different changes gave one key"


def boot_identity(names: list[str], node: str) -> str:
    """The boot-time set-up of ``node`` in a network of ``names`` (name, NICs, addresses; no /etc/hosts)."""
    plans = plan({n: (1,) for n in names})
    return script(MachineConfig(), node, setup_script(plans[node]))


def test_per_run_parts_are_not_in_the_key() -> None:
    # The state directory and the VLAN sockets are placeholders; the other nodes' names (/etc/hosts) are
    # applied after the restore: a node's snapshot serves every test that declares the same node.
    argv = key_argv(MachineConfig(), IMAGE, "tcg", ())
    assert not any("/tmp/" in a for a in argv)
    webserver = key(
        network=vlan_key_args(["client", "server"], "client"), identity=boot_identity(["client", "server"], "client")
    )
    router = key(
        network=vlan_key_args(["client", "router", "server"], "client"),
        identity=boot_identity(["client", "router", "server"], "client"),
    )
    assert webserver == router
    # Another name or another address is another machine at boot.
    assert webserver != key(
        network=vlan_key_args(["client", "server"], "client"), identity=boot_identity(["client", "server"], "server")
    )
    assert webserver != key(
        network=vlan_key_args(["a", "client"], "client"), identity=boot_identity(["a", "client"], "client")
    )


def forwarding(host_port: int, guest_port: int = 8000, back_port: int = 9000) -> MachineConfig:
    return MachineConfig(
        virtualisation={
            "forward_ports": [
                {"from": "host", "host_port": host_port, "guest_port": guest_port},
                {"from": "guest", "guest_address": "10.0.2.100", "guest_port": 80, "host_port": back_port},
            ]
        }
    )


def test_the_hosts_side_of_a_forwarded_port_is_not_in_the_key() -> None:
    # a test that picks a free port per run finds its snapshot; the guest's side is what the guest sees
    assert key(forwarding(41000)) == key(forwarding(52000, back_port=9999))
    assert key(forwarding(41000)) != key(forwarding(41000, guest_port=8080))
    assert key(forwarding(41000)) != key()  # the user network itself is a device
    argv = " ".join(key_argv(forwarding(41000), IMAGE, "tcg", ()))
    assert "41000" not in argv and "9000" not in argv and ":8000" in argv


def test_a_shares_host_directory_is_not_in_the_key(tmp_path: Path) -> None:
    for run in ("run1", "run2"):
        (tmp_path / run).mkdir()

    def shared(run: str, tag: str = "data") -> MachineConfig:
        share = {"source": str(tmp_path / run), "target": "/mnt/data"}
        return MachineConfig(virtualisation={"shared_directories": {tag: share}})

    assert key(shared("run1")) == key(shared("run2"))
    assert key(shared("run1")) != key(shared("run1", tag="other"))  # the guest sees the tag
    assert key(shared("run1")) != key()
    assert not any("run1" in arg for arg in key_argv(shared("run1"), IMAGE, "tcg", ()))
