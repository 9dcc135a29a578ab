"""Foreign images: a Debian system vmtest did not build (no backdoor, no set-up service), driven over its serial
console; two of them and one vmtest machine on a VLAN; the Debian installer read from the screen.

The Debian image is built here, in the module's setup, the way anyone would: mmdebstrap with a kernel (its
initramfs with the modules a virtio disk needs), a root password and a getty on ttyS0, into an ext4 file system;
vmtest's boot-disk builder (vmtest.image.bootdisk) puts it in a GPT disk with GRUB, which SeaBIOS boots. The
plain file system also boots by direct boot of its own kernel and initrd, pulled out of it with debugfs
(vmtest.image.bootfiles).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtest import Driver, ForeignImage, Machine, MachineConfig, MachineError, Timeout
from vmtest.core.cache import Cache
from vmtest.image import ImageStore, bootdisk, scratch
from vmtest.image.bootdisk import BootDiskSpec
from vmtest.image.bootfiles import extract
from vmtest.image.grubfiles import smbios_args
from vmtest.image.kernel import download_deb
from vmtest.vm import snapshot as snap

PASSWORD = "foreign-root-pw"
PACKAGES = "linux-image-amd64,systemd-sysv,udev,login,passwd,iproute2,iputils-ping,netcat-openbsd,procps,kmod"
RECIPE = [
    "mmdebstrap",
    "--mode=unshare",
    "--variant=minbase",
    f"--include={PACKAGES}",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    f'--customize-hook=echo root:{PASSWORD} | chroot "$1" chpasswd',
    '--customize-hook=echo foreign > "$1/etc/hostname"',
    '--customize-hook=printf "# the root comes from the kernel command line\\n" > "$1/etc/fstab"',
    '--customize-hook=chroot "$1" systemctl enable serial-getty@ttyS0.service',
    # an initramfs with the drivers a virtio disk needs, as MODULES=dep makes on such a machine (in a chroot dep
    # cannot see the machine): 36 MB with Debian's default MODULES=most, which GRUB reads through the BIOS's
    # disk calls at every boot from the disk (8.5 s from the reset to the kernel's first line, quiet host)
    '--customize-hook=printf "virtio_pci\\nvirtio_blk\\next4\\n" >> "$1/etc/initramfs-tools/modules"',
    '--customize-hook=echo MODULES=list > "$1/etc/initramfs-tools/conf.d/modules"',
    '--customize-hook=chroot "$1" update-initramfs -u -k all',
    "bookworm",
]
DISK_MIB = 1536
KERNEL_PARAMS = "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0"
# The bootable disk's GRUB menu takes the kernel command line from an SMBIOS OEM string (vmtest's boot-disk
# builder, vmtest/image/grubfiles.py); the root is the disk's third partition.
GRUB_PARAMS = ["root=/dev/vda3", "rw", "console=ttyS0,115200", "net.ifnames=0"]


@dataclass(frozen=True)
class DebianImage:
    plain: Path  # the root file system alone (whole-disk ext4, qcow2): booted by its own kernel, direct
    kernel: Path  # pulled out of it with debugfs
    initrd: Path
    bootable: Path  # the same root in a GPT disk with GRUB (BIOS and UEFI): booted by the firmware


def build_debian_image(cache: Path, logger: logging.Logger | None = None) -> DebianImage:
    """A Debian image (kept in ``cache`` by its recipe: built once per host, one build at a time), its kernel
    and initrd pulled out of it, and a bootable disk of it with GRUB installed by vmtest's boot-disk builder
    (vmtest.image.bootdisk)."""
    logger = logger or logging.getLogger("foreign-image")
    key = hashlib.sha256(repr(RECIPE).encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building it: wait for its image
        image = _build_debian_image(cache / key, key, logger)
    _remove_other_recipes(cache, key)
    return image


def _remove_other_recipes(cache: Path, key: str) -> None:
    """The images of earlier recipes (another key), unless a run is building one right now."""
    for other in cache.glob("*.lock"):
        if other.stem == key:
            continue
        with other.open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(cache / other.stem, ignore_errors=True)
            other.unlink()


def _build_debian_image(out: Path, key: str, logger: logging.Logger) -> DebianImage:
    image = out / "debian.qcow2"
    if not image.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = dict(os.environ, TMPDIR=str(out))
        raw = out / "debian.raw"
        # the tree in memory when the host has room, as vmtest's own builds do (vmtest.image.scratch)
        with scratch.tree_dir(out / "tree", f"foreign-{key}") as tree:
            subprocess.run([*RECIPE, str(tree)], check=True, env=env, capture_output=True)
            mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", "-d", str(tree), str(raw)]
            subprocess.run([*mkfs, f"{DISK_MIB}M"], check=True)
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / "tmp.qcow2")], check=True
        )
        raw.unlink()
        (out / "meta.json").write_text(json.dumps({"created": time.time()}))
        (out / "tmp.qcow2").rename(image)
    boot = extract(image, out / "boot")
    _, bootable, _ = bootdisk.build(
        Cache(out / "cache"), key, image, DISK_MIB, boot.kernel, boot.initrd, boot.release, BootDiskSpec(), logger
    )
    return DebianImage(image, boot.kernel, boot.initrd, bootable)


def debian_cache(store: ImageStore) -> Path:
    """Where the Debian image is kept: beside vmtest's cache, not in pytest's (inside the checkout), so that a
    fresh clone on a host that built it once does not build it again (as vmtest's own images)."""
    return store.cache.root.parent / "vmtest-test-fixtures" / "foreign-debian"


@pytest.fixture(scope="module")
def debian(vm_image_store: ImageStore) -> DebianImage:
    return build_debian_image(debian_cache(vm_image_store))


def direct_config(debian: DebianImage, **image: object) -> MachineConfig:
    """The plain image booted by its own kernel and initrd (direct boot)."""
    return MachineConfig(
        image=ForeignImage(
            path=str(debian.plain), kernel=str(debian.kernel), initrd=str(debian.initrd), password=PASSWORD, **image
        ),
        kernel_params=KERNEL_PARAMS,
        virtualisation={"graphics": False},
    )


def grub_config(debian: DebianImage, **image: object) -> MachineConfig:
    """The bootable disk: SeaBIOS boots GRUB from it, GRUB the kernel."""
    return MachineConfig(
        image=ForeignImage(path=str(debian.bootable), password=PASSWORD, **image),
        virtualisation={"graphics": False, "qemu": {"options": [shlex.join(smbios_args(0, GRUB_PARAMS))]}},
    )


@pytest.fixture(scope="module")
def vm(debian, vm_image_store, tmp_path_factory):
    machine = Machine(
        "foreign", grub_config(debian), store=vm_image_store, state_dir=tmp_path_factory.mktemp("foreign")
    )
    yield machine
    machine.release()


def test_foreign_debian(vm: Machine, debian: DebianImage) -> None:
    """Booted by GRUB from its disk; login over the serial console, exact output (binary too), stderr and status,
    the image untouched."""
    before = debian.bootable.stat().st_mtime_ns
    assert vm.succeed("printf 'one\\ntwo'") == "one\ntwo"
    status, out = vm.execute("echo out; echo err >&2; exit 7")
    assert (status, out) == (7, "out\n")
    assert vm.execute("echo err >&2").stderr == "err\n"
    assert vm.succeed("cat /etc/hostname") == "foreign\n"
    assert "vmtest" not in vm.succeed("systemctl list-units --all --no-legend 'vmtest*'")
    blob = vm.succeed("head -c 65536 /dev/urandom | tee /root/blob").encode(errors="surrogateescape")
    assert len(blob) == 65536
    assert hashlib.sha256(blob).hexdigest() == vm.succeed("sha256sum /root/blob").split()[0]
    assert vm.succeed("echo " + "x" * 9000 + " | wc -c").strip() == "9001"  # a command longer than a tty line
    assert debian.bootable.stat().st_mtime_ns == before  # never written: the machine has its overlay
    assert "-kernel" not in vm.vm.argv and not any("virtconsole" in a for a in vm.vm.argv)
    assert "BOOT_IMAGE=/boot/vmlinuz-" in vm.succeed("cat /proc/cmdline")  # GRUB booted it


def test_timeout_leaves_the_channel_usable(vm: Machine) -> None:
    start = time.monotonic()
    with pytest.raises(Timeout):
        vm.execute("sleep 600", timeout=3)
    assert time.monotonic() - start < 30
    assert vm.succeed("echo still here") == "still here\n"
    with pytest.raises(Timeout):  # a command that ignores the first Ctrl-C
        vm.execute("trap '' INT; sleep 8", timeout=2)
    assert vm.succeed("echo again") == "again\n"


LINES = 3000
EXPECTED = "".join(f"line {i}\n" for i in range(1, LINES + 1))
# Kernel messages go on for a while after the command ended: they land in the middle of its frame as the
# guest prints it (tests/unit/data/serial-interleaved.bin is such a stream, recorded from this command).
NOISY = (
    '(for i in $(seq 1 60); do echo "<1>vmtest-noise $i" > /dev/kmsg; sleep 0.01; done) >/dev/null 2>&1 & '
    f'seq 1 {LINES} | sed "s/^/line /"'
)


def test_kernel_messages_interleaving_never_corrupt_output(vm: Machine) -> None:
    """The kernel logs to the same console while a frame is printed: the output still comes exact."""
    vm.succeed("dmesg -n 8")
    for _ in range(3):
        assert vm.succeed(NOISY) == EXPECTED
        binary = vm.succeed("printf AAEC/w== | base64 -d").encode(errors="surrogateescape")
        assert binary == b"\x00\x01\x02\xff"
    vm.wait_until_succeeds("! pgrep -f vmtest-noise", timeout=60)
    # the kernel printed them on the console (fewer than written: /dev/kmsg writes are rate-limited)
    assert sum("vmtest-noise" in line for line in vm.get_console_log().splitlines()) >= 10


def test_copies_through_the_shell(vm: Machine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(20000))
    vm.copy_from_host(str(src), "/root/copied")
    assert vm.succeed("sha256sum /root/copied").split()[0] == hashlib.sha256(src.read_bytes()).hexdigest()
    back = vm.copy_from_machine("/root/copied", str(tmp_path / "back"))
    assert Path(back).read_bytes() == src.read_bytes()


def test_wait_for_unit_and_reboot(vm: Machine) -> None:
    vm.wait_for_unit("multi-user.target")
    vm.succeed("touch /root/survives-reboot")
    boot_id = vm.succeed("cat /proc/sys/kernel/random/boot_id")
    vm.reboot()
    assert vm.succeed("cat /proc/sys/kernel/random/boot_id") != boot_id
    vm.succeed("test -e /root/survives-reboot")
    vm.wait_for_unit("systemd-journald.service")


SAVING = "foreign boot, saving a booted snapshot"
RESTORED = "restore of a booted snapshot"


def test_snapshot_restore(debian: DebianImage, vm_image_store, tmp_path: Path, caplog) -> None:
    """The first start of a foreign machine boots, logs in and saves a snapshot (or an earlier run did); the next
    ones restore it: a new serial session over the logged-in shell, the host's clock, a reseeded RNG (vmgenid),
    none of an earlier machine's writes. A truncated snapshot is dropped; the machine boots on a fresh overlay
    and saves a good one in its place."""
    cfg = direct_config(debian)
    starts, randoms = [], []
    for i in range(3):
        vm = Machine("fsnap", cfg, store=vm_image_store, snapshots=True, state_dir=tmp_path / f"s{i}")
        try:
            assert vm.succeed("echo up") == "up\n"
            starts.append(vm.vm.start_path.name)
            vm.fail("test -e /root/written")  # the disk is the snapshot's, not the last machine's
            vm.succeed("touch /root/written")
            guest = float(vm.succeed("date +%s.%N"))
            assert abs(guest - time.time()) < 2, (guest, time.time())
            randoms.append(vm.succeed("head -c 16 /dev/urandom | od -An -tx1"))
            snapshot = getattr(vm.vm.start_path, "snapshot", None) or vm.vm.start_path.saved
        finally:
            vm.release()
    assert starts[0] in (SAVING, RESTORED) and starts[1:] == [RESTORED, RESTORED], starts
    assert len(set(randoms)) == 3, randoms  # two restores of one snapshot read different bytes
    with open(snapshot.state, "r+b") as fh:  # truncated, as by a full disk or a killed copy
        fh.truncate(snapshot.state.stat().st_size // 3)
    caplog.clear()
    vm = Machine("fsnap", cfg, store=vm_image_store, snapshots=True, state_dir=tmp_path / "cold")
    try:
        assert vm.succeed("echo up") == "up\n"
        assert vm.vm.start_path.name == SAVING
        vm.fail("test -e /root/written")
        assert abs(float(vm.succeed("date +%s.%N")) - time.time()) < 2
    finally:
        vm.release()
    lines = [r.getMessage() for r in caplog.records if "could not be restored" in r.getMessage()]
    assert len(lines) == 1 and snapshot.key[:12] in lines[0], lines
    assert snap.lookup(vm_image_store.cache, snapshot.key, snap.qemu_version("qemu-system-x86_64")) is not None


def test_bad_input_is_a_clear_error(debian, tmp_path: Path) -> None:
    from vmtest import ConfigError

    with pytest.raises(ConfigError, match=r"image.path.*no such file"):
        MachineConfig(image={"path": str(tmp_path / "missing.qcow2")})
    with pytest.raises(ConfigError, match=r"image.format.*one of"):
        MachineConfig(image={"path": str(debian.plain), "format": "vmdk"})


@pytest.fixture(scope="module")
def two_foreign_and_one_vmtest(debian: DebianImage, vm_image_store, tmp_path_factory):
    """Machine a boots GRUB from its disk and gets vmtest's network set-up over its shell; b boots its own
    kernel directly and configures its NIC itself; c is a vmtest machine. All three on VLAN 1."""
    nodes = {
        "a": grub_config(debian, network_setup=True),
        "b": direct_config(debian),
        "c": MachineConfig(),
    }
    driver = Driver(nodes, vm_image_store, state_root=tmp_path_factory.mktemp("vlan"))
    yield driver
    driver.release()


def test_foreign_vlan(two_foreign_and_one_vmtest: Driver) -> None:
    a, b, c = (two_foreign_and_one_vmtest.machines[n] for n in "abc")
    two_foreign_and_one_vmtest.start_all()
    # b's NIC (MAC 52:54:00:12:01:02) is configured by the guest itself, as any foreign guest would
    assert b.succeed("cat /sys/class/net/eth0/address").strip() == "52:54:00:12:01:02"
    b.succeed("ip addr add 192.168.1.2/24 dev eth0 && ip link set eth0 up")
    assert "192.168.1.1/24" in a.succeed("ip -4 addr show eth1")  # network_setup: vmtest's names and addresses
    # start_all() does not wait for the guests: c boots cold when its snapshot is missing (a new image), and a
    # ping then found nobody at c's address yet
    c.wait_for_unit("vmtest-setup.service")
    a.succeed("ping -c 1 -W 10 c", "ping -c 1 -W 10 192.168.1.2")  # /etc/hosts names every node
    b.succeed("ping -c 1 -W 10 192.168.1.1", "ping -c 1 -W 10 192.168.1.3")
    # (c has busybox ping, no iputils; b has only the IPv4 address it gave itself, /etc/hosts names both)
    c.succeed("busybox ping -c 1 -W 10 a", "busybox ping -4 -c 1 -W 10 b")
    a.succeed("(nc -l -p 4000 > /root/got 2>/dev/null &)")
    a.wait_for_open_port(4000)
    c.succeed("echo hello-from-c | nc -q 1 a 4000")
    a.wait_until_succeeds("grep -q hello-from-c /root/got", timeout=30)
    b.block()
    c.fail("busybox ping -4 -c 1 -W 2 b")
    b.unblock()
    c.wait_until_succeeds("busybox ping -4 -c 1 -W 2 b", timeout=60)


INSTALLER_PACKAGE = "debian-installer-12-netboot-amd64"
INSTALLER_DIR = "./usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64"


@pytest.fixture(scope="module")
def installer(request: pytest.FixtureRequest, vm_image_store) -> tuple[Path, Path]:
    """The Debian installer's own kernel and initrd, from its Debian package (fetched like vmtest's .debs)."""
    out = Path(request.config.cache.mkdir("vmtest-foreign-installer"))
    kernel, initrd = out / INSTALLER_DIR / "linux", out / INSTALLER_DIR / "initrd.gz"
    if not initrd.exists():
        version = (
            subprocess.run(["apt-cache", "policy", INSTALLER_PACKAGE], capture_output=True, text=True, check=True)
            .stdout.split("Candidate:")[1]
            .split()[0]
        )
        deb = download_deb(vm_image_store.cache, INSTALLER_PACKAGE, version, logging.getLogger("installer"))
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(out), f"{INSTALLER_DIR}/linux", f"{INSTALLER_DIR}/initrd.gz"],
                       stdin=tar.stdout, check=True)  # fmt: skip
        assert tar.wait() == 0
    return kernel, initrd


def test_installer_screens(installer: tuple[Path, Path], vm_image_store, tmp_path_factory) -> None:
    """The installer (no disk, no shell) on vmtest's screen: its first screen read by OCR, a key moves on.

    ``nomodeset``: the installer on the VGA text console (80x25), as on a machine without a usable framebuffer,
    instead of its framebuffer terminal on bochs-drm (1024x768): the same screens, reached in 20.8 s instead of
    27.9 s on a quiet host (drawing the framebuffer is emulated code); vmtest's own framebuffer console is read
    by the screen tests."""
    kernel, initrd = installer
    config = MachineConfig(
        image={"kernel": str(kernel), "initrd": str(initrd), "shell": "none"},
        kernel_params="priority=high nomodeset",
        virtualisation={"memory_size": 1024},
    )
    with Machine("installer", config, store=vm_image_store, state_dir=tmp_path_factory.mktemp("di")) as machine:
        machine.start()
        machine.wait_for_text(r"[Ss]elect a language", timeout=600)
        machine.screenshot("installer-language")
        machine.send_key("ret")  # English, the default
        machine.wait_for_text(r"[Ss]elect your location", timeout=300)
        machine.screenshot("installer-location")
        with pytest.raises(MachineError, match="it has no shell"):
            machine.succeed("true")
