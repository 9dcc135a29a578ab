"""The virtualisation options, each verified inside a real guest (docs/options.md links here)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from vmtest import Machine, MachineConfig
from vmtest.core.errors import MachineError

MIB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _block_size(vm: Machine, dev: str) -> int:
    vm.wait_for_file(dev, timeout=60)  # by-id links appear once udev has seen the disk
    return int(vm.succeed(f"blockdev --getsize64 {dev}").strip())


def test_sizes(vm_factory) -> None:
    vm = vm_factory(
        "sizes",
        MachineConfig(
            virtualisation={
                "memory_size": 777,
                "cores": 2,
                "disk_size": 2048,
                "empty_disk_images": [64, 32],
            }
        ),
    )
    mem_kib = int(vm.succeed("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert 700 * 1024 < mem_kib <= 777 * 1024, mem_kib  # the kernel keeps a little for itself
    assert vm.succeed("nproc").strip() == "2"
    root_bytes = int(vm.succeed("df -B1 --output=size / | tail -n1"))
    assert 1900 * MIB < root_bytes <= 2048 * MIB, root_bytes  # resized to the disk at boot
    assert _block_size(vm, "/dev/vda") == 2048 * MIB
    assert _block_size(vm, "/dev/disk/by-id/virtio-empty0") == 64 * MIB
    assert _block_size(vm, "/dev/disk/by-id/virtio-empty1") == 32 * MIB
    for dev in ("/dev/disk/by-id/virtio-empty0", "/dev/disk/by-id/virtio-empty1"):
        vm.succeed(f"printf vmtest-wrote-this | dd of={dev} conv=fsync status=none")
        assert vm.succeed(f"head -c 17 {dev}") == "vmtest-wrote-this"


@pytest.mark.parametrize("interface, driver", [("scsi", "virtio_scsi"), ("ide", "ata_piix")])
def test_disk_interface(vm_factory, interface: str, driver: str) -> None:
    vm = vm_factory(
        f"disk-{interface}",
        MachineConfig(
            virtualisation={
                "qemu": {"disk_interface": interface},
                "empty_disk_images": [16],
            }
        ),
    )
    # SCSI disks probe in parallel: the root is whichever sd* carries the label, the empty disk the other.
    root = vm.succeed("findmnt -no SOURCE /").strip()
    assert root in ("/dev/sda", "/dev/sdb"), root
    assert vm.succeed(f"blkid -o value -s LABEL {root}").strip() == "vmtest-root"
    empty = "/dev/sdb" if root == "/dev/sda" else "/dev/sda"
    assert _block_size(vm, empty) == 16 * MIB
    # the one virtio disk is the kernel's module disk (always virtio-blk, read-only, on /lib/modules/<release>)
    assert [d for d in vm.succeed("ls /sys/block").split() if d.startswith("vd")] == ["vda"]
    assert vm.succeed("blkid -o value -s LABEL /dev/vda").strip() == "vmtest-modules"
    assert vm.succeed("findmnt -no SOURCE,OPTIONS /lib/modules/$(uname -r)").startswith("/dev/vda ro,")
    vm.succeed(f"test -d /sys/module/{driver}")
    vm.succeed("echo written > /root/on-root && sync && cat /root/on-root")


def test_disk_image_persistence(vm_factory) -> None:
    kept = vm_factory("kept", MachineConfig())
    kept.succeed("echo survives > /root/marker && sync")
    kept.reboot()
    assert kept.succeed("cat /root/marker") == "survives\n"
    assert (kept.state_dir / "kept.qcow2").is_file()

    volatile = vm_factory("volatile", MachineConfig(virtualisation={"disk_image": None}))
    assert volatile.succeed("findmnt -no FSTYPE /").strip() == "overlay"
    volatile.succeed("echo vanishes > /root/marker && sync")
    assert volatile.succeed("cat /root/marker") == "vanishes\n"
    volatile.reboot()
    volatile.fail("test -e /root/marker")
    assert not list(volatile.state_dir.glob("*.qcow2"))


def test_shared_directories(vm_factory, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "from-host.txt").write_text("written on the host\n")
    vm = vm_factory(
        "shares",
        MachineConfig(
            virtualisation={
                "shared_directories": {"data": {"source": str(share), "target": "/mnt/data"}},
                "msize": 65536,
                "file_systems": {"/mnt/scratch": {"device": "tmpfs", "fs_type": "tmpfs", "options": ["size=16m"]}},
                "use_host_certs": True,
            }
        ),
    )
    assert vm.succeed("cat /mnt/data/from-host.txt") == "written on the host\n"
    vm.succeed("echo written in the guest > /mnt/data/from-guest.txt && mkdir -p /mnt/data/sub")
    assert (share / "from-guest.txt").read_text() == "written in the guest\n"
    assert (share / "sub").is_dir()
    options = vm.succeed("findmnt -no OPTIONS /mnt/data")
    assert "msize=65536" in options and "trans=virtio" in options
    assert vm.succeed("findmnt -no FSTYPE,SIZE /mnt/scratch").split() == ["tmpfs", "16M"]
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    guest_sum = vm.succeed("sha256sum /etc/ssl/certs/ca-certificates.crt").split()[0]
    assert guest_sum == hashlib.sha256(host_bundle).hexdigest()


class _OneLineServer:
    """A TCP server on host loopback that greets every client with one line."""

    def __init__(self, greeting: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.clients = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients += 1
            with conn:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self.sock.close()


def _read_from(port: int, tries: int = 20) -> bytes:
    """What a host client reads from a loopback port. QEMU accepts a forwarded connection before it
    reaches the guest, so a moment without a listener in the guest reads as b"": try again then."""
    for _ in range(tries):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if data:
            return data
        time.sleep(0.5)
    return b""


GUEST_SERVER = {
    "greeter.service": "[Service]\nExecStart=/bin/sh -c 'while true; do echo hello-from-guest | nc -N -l 8000; done'\n",
}


def test_forwarding(vm_factory) -> None:
    host_server = _OneLineServer(b"hello-from-host\n")
    try:
        host_port = _free_port()
        vm = vm_factory(
            "fwd",
            MachineConfig(
                units=GUEST_SERVER,
                services=["greeter.service"],
                virtualisation={
                    "forward_ports": [
                        {"from": "host", "host_port": host_port, "guest_port": 8000},
                        {
                            "from": "guest",
                            "guest_address": "10.0.2.100",
                            "guest_port": 80,
                            "host_address": "127.0.0.1",
                            "host_port": host_server.port,
                        },
                    ]
                },
            ),
        )
        vm.wait_for_open_port(8000, timeout=120)
        # host -> guest through a loopback port
        assert _read_from(host_port) == b"hello-from-guest\n"
        # guest -> host through its 10.0.2.x address
        assert vm.succeed("nc -w 10 10.0.2.100 80 </dev/null") == "hello-from-host\n"
        assert host_server.clients == 1
        # restrict_network (default): the same host server is unreachable except through the forwarding
        status, _ = vm.execute(f"nc -z -w 3 10.0.2.2 {host_server.port}")
        assert status != 0
        status, _ = vm.execute("nc -z -w 3 10.0.2.3 53")
        assert status != 0
        assert host_server.clients == 1
        vm.fail("ip route get 1.1.1.1")  # no route out at all
        # forward_port at run time
        later = _free_port()
        vm.forward_port(later, 8000)
        assert _read_from(later) == b"hello-from-guest\n"
    finally:
        host_server.close()


def test_forward_port_needs_the_user_network(vm_factory) -> None:
    vm = vm_factory("nofwd", MachineConfig())
    with pytest.raises(MachineError, match="no user-mode network"):
        vm.forward_port(_free_port(), 80)


def test_qemu_options_and_consoles(vm_factory) -> None:
    vm = vm_factory(
        "qopts",
        MachineConfig(
            virtualisation={
                "qemu": {
                    "options": ["-smbios type=1,serial=vmtest-smbios-42"],
                    "consoles": ["tty1", "ttyS0,115200"],
                }
            }
        ),
    )
    assert vm.succeed("cat /sys/class/dmi/id/product_serial").strip() == "vmtest-smbios-42"
    assert vm.succeed("cat /sys/class/tty/console/active").split() == ["tty1", "ttyS0"]


def test_networking_options(vm_factory) -> None:
    vm = vm_factory(
        "netopts",
        MachineConfig(
            virtualisation={
                "qemu": {
                    "networking_options": [
                        "-netdev user,id=extra,restrict=on",
                        "-device virtio-net-pci,netdev=extra,mac=52:54:00:aa:bb:cc",
                    ]
                }
            }
        ),
    )
    assert "52:54:00:aa:bb:cc" in vm.succeed("cat /sys/class/net/*/address")


def test_drives(vm_factory, vm_image_store, tmp_path: Path) -> None:
    extra = tmp_path / "extra.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(extra), "8M"], check=True)
    vm = vm_factory(
        "drives",
        MachineConfig(
            virtualisation={
                "qemu": {
                    "drives": [
                        {
                            "file": str(extra),
                            "name": "data",
                            "drive_extra_opts": {"format": "qcow2", "cache": "none"},
                            "device_extra_opts": {"serial": "extra-drive"},
                        },
                    ]
                }
            }
        ),
    )
    assert _block_size(vm, "/dev/disk/by-id/virtio-extra-drive") == 8 * MIB
    vm.succeed("printf via-drive | dd of=/dev/disk/by-id/virtio-extra-drive conv=fsync status=none")
    vm.shutdown()
    raw = tmp_path / "extra.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(extra), str(raw)], check=True)
    assert raw.read_bytes()[:9] == b"via-drive"

    # use_default_filesystems=False: the test brings its own root disk as a drive.
    image = vm_image_store.get(MachineConfig())
    own_root = tmp_path / "own-root.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk), str(own_root)], check=True
    )
    byo = vm_factory(
        "byo",
        MachineConfig(
            virtualisation={
                "use_default_filesystems": False,
                "root_device": "/dev/vda",
                "qemu": {
                    "drives": [
                        {
                            "file": str(own_root),
                            "drive_extra_opts": {"format": "qcow2"},
                            "device_extra_opts": {"serial": "my-root"},
                        }
                    ]
                },
            }
        ),
    )
    assert byo.succeed("findmnt -no SOURCE /").strip() == "/dev/vda"
    byo.wait_for_file("/dev/disk/by-id/virtio-my-root", timeout=60)
    assert byo.succeed("ls /dev/disk/by-id/").split() == ["virtio-my-root"]


def test_guest_agent_and_virtio_keyboard(vm_factory) -> None:
    vm = vm_factory("agent", MachineConfig())
    vm.connect()
    assert vm.guest_agent("guest-ping") == {}
    info = vm.guest_agent("guest-info")
    assert info["version"] and any(c["name"] == "guest-ping" for c in info["supported_commands"])
    assert vm.guest_agent("guest-get-host-name") == {"host-name": "agent"}
    assert "QEMU Virtio Keyboard" in vm.succeed("cat /proc/bus/input/devices")

    bare = vm_factory("bare", MachineConfig(virtualisation={"qemu": {"guest_agent": False, "virtio_keyboard": False}}))
    assert "Virtio Keyboard" not in bare.succeed("cat /proc/bus/input/devices")
    bare.fail("test -e /dev/virtio-ports/org.qemu.guest_agent.0")
    with pytest.raises(MachineError, match="guest_agent is off"):
        bare.guest_agent("guest-ping")
