"""Foreign images: a Debian system vmtest did not build (no backdoor, no set-up service), driven over its serial
console; two of them and one vmtest machine on a VLAN; the Debian installer read from the screen.

The Debian image is built here, in the module's setup, the way anyone would: mmdebstrap with a kernel, a root
password and a getty on ttyS0, into a whole-disk ext4 file system. It boots its own kernel and initrd, pulled
out of the image with debugfs (vmtest.image.bootfiles), by direct boot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vmtest import ForeignImage, Machine, MachineConfig, Timeout
from vmtest.image.bootfiles import extract

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
    '--customize-hook=printf "/dev/vda / ext4 rw 0 1\\n" > "$1/etc/fstab"',
    '--customize-hook=chroot "$1" systemctl enable serial-getty@ttyS0.service',
    "bookworm",
]
KERNEL_PARAMS = "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0"


def build_debian_image(cache: Path) -> tuple[Path, Path, Path]:
    """A qcow2 Debian image (kept in pytest's cache, by its recipe), and its kernel and initrd pulled out of it."""
    key = hashlib.sha256(repr(RECIPE).encode()).hexdigest()[:16]
    out = cache / key
    image = out / "debian.qcow2"
    if not image.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        tree = out / "tree"
        env = dict(os.environ, TMPDIR=str(out))
        subprocess.run([*RECIPE, str(tree)], check=True, env=env, capture_output=True)
        raw = out / "debian.raw"
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", "-d", str(tree), str(raw), "1536M"], check=True
        )
        shutil.rmtree(tree)
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / "tmp.qcow2")], check=True
        )
        raw.unlink()
        (out / "tmp.qcow2").rename(image)
    boot = extract(image, out / "boot")
    return image, boot.kernel, boot.initrd


@pytest.fixture(scope="module")
def debian(request: pytest.FixtureRequest) -> tuple[Path, Path, Path]:
    return build_debian_image(Path(request.config.cache.mkdir("vmtest-foreign-debian")))


def foreign_config(debian: tuple[Path, Path, Path], **image: object) -> MachineConfig:
    path, kernel, initrd = debian
    return MachineConfig(
        image=ForeignImage(path=str(path), kernel=str(kernel), initrd=str(initrd), password=PASSWORD, **image),
        kernel_params=KERNEL_PARAMS,
        virtualisation={"graphics": False},
    )


@pytest.fixture(scope="module")
def vm(debian, vm_image_store, tmp_path_factory):
    machine = Machine(
        "foreign", foreign_config(debian), store=vm_image_store, state_dir=tmp_path_factory.mktemp("foreign")
    )
    yield machine
    machine.release()


def test_foreign_debian(vm: Machine, debian) -> None:
    """Login over the serial console, exact output (binary too), stderr and status, the image untouched."""
    before = debian[0].stat().st_mtime_ns
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
    assert debian[0].stat().st_mtime_ns == before  # never written: the machine has its overlay
    assert "-kernel" in vm.vm.argv and not any("virtconsole" in a for a in vm.vm.argv)


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
    assert sum("vmtest-noise" in line for line in vm.get_console_log().splitlines()) >= 100


def test_copies_through_the_shell(vm: Machine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(20000))
    vm.copy_from_host(str(src), "/root/copied")
    assert vm.succeed("sha256sum /root/copied").split()[0] == hashlib.sha256(src.read_bytes()).hexdigest()
    back = vm.copy_from_vm("/root/copied", str(tmp_path / "back"))
    assert Path(back).read_bytes() == src.read_bytes()


def test_wait_for_unit_and_reboot(vm: Machine) -> None:
    vm.wait_for_unit("multi-user.target")
    vm.succeed("touch /root/survives-reboot")
    boot_id = vm.succeed("cat /proc/sys/kernel/random/boot_id")
    vm.reboot()
    assert vm.succeed("cat /proc/sys/kernel/random/boot_id") != boot_id
    vm.succeed("test -e /root/survives-reboot")
    vm.wait_for_unit("systemd-journald.service")


def test_bad_input_is_a_clear_error(debian, tmp_path: Path) -> None:
    from vmtest import ConfigError

    with pytest.raises(ConfigError, match=r"image.path.*no such file"):
        MachineConfig(image={"path": str(tmp_path / "missing.qcow2")})
    with pytest.raises(ConfigError, match=r"image.format.*one of"):
        MachineConfig(image={"path": str(debian[0]), "format": "vmdk"})
