"""QEMU's command line, pinned literally: any change shows up as a diff here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest.config import MachineConfig
from vmtest.qemu import Boot, MachinePaths, accel_args, kernel_params, machine_argv, probe_argv, root_disk

BOOT = Boot(kernel=Path("/cache/kernels/k1/vmlinuz"), initrd=Path("/cache/kernels/k1/initrd.img"))
PATHS = MachinePaths(Path("/run/vmtest/m1"))
CUSTOM = MachineConfig(
    suite="bookworm",
    kernel_params=["foo=bar"],
    virtualisation={"graphics": False, "memory_size": 777, "cores": 2},
)

DEFAULT_KVM = [
    "qemu-system-x86_64",
    "-name", "m1,process=vmtest-m1",
    "-nodefaults", "-no-user-config", "-S",
    "-machine", "pc",
    "-accel", "kvm", "-cpu", "host",
    "-m", "1024",
    "-smp", "1",
    "-kernel", "/cache/kernels/k1/vmlinuz",
    "-initrd", "/cache/kernels/k1/initrd.img",
    "-append",
    "root=/dev/vda console=tty0 console=ttyS0,115200 panic=-1 systemd.hostname=m1 "
    "systemd.show_status=auto rd.udev.log_level=3 net.ifnames=0",
    "-drive", "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device", "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev", "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon", "chardev=qmp,mode=control",
    "-chardev", "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial", "chardev:serial0",
    "-device", "virtio-serial-pci,id=virtio-serial0",
    "-chardev", "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device", "virtconsole,chardev=shell,id=backdoor",
    "-chardev", "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev", "local,id=xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    "-display", "none", "-device", "VGA,xres=1024,yres=768",
    "-device", "virtio-keyboard-pci",
    "-device", "virtio-rng-pci",
    "-rtc", "base=utc",
]

DEFAULT_TCG = [
    "qemu-system-x86_64",
    "-name", "m1,process=vmtest-m1",
    "-nodefaults", "-no-user-config", "-S",
    "-machine", "pc",
    "-accel", "tcg,thread=multi", "-cpu", "max",
    "-m", "1024",
    "-smp", "1",
    "-kernel", "/cache/kernels/k1/vmlinuz",
    "-initrd", "/cache/kernels/k1/initrd.img",
    "-append",
    "root=/dev/vda console=tty0 console=ttyS0,115200 panic=-1 systemd.hostname=m1 "
    "systemd.show_status=auto rd.udev.log_level=3 net.ifnames=0",
    "-drive", "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device", "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev", "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon", "chardev=qmp,mode=control",
    "-chardev", "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial", "chardev:serial0",
    "-device", "virtio-serial-pci,id=virtio-serial0",
    "-chardev", "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device", "virtconsole,chardev=shell,id=backdoor",
    "-chardev", "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev", "local,id=xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    "-display", "none", "-device", "VGA,xres=1024,yres=768",
    "-device", "virtio-keyboard-pci",
    "-device", "virtio-rng-pci",
    "-rtc", "base=utc",
]

CUSTOM_TCG = [
    "qemu-system-x86_64",
    "-name", "m1,process=vmtest-m1",
    "-nodefaults", "-no-user-config", "-S",
    "-machine", "pc",
    "-accel", "tcg,thread=multi", "-cpu", "max",
    "-m", "777",
    "-smp", "2",
    "-kernel", "/cache/kernels/k1/vmlinuz",
    "-initrd", "/cache/kernels/k1/initrd.img",
    "-append",
    "root=/dev/vda console=ttyS0,115200 panic=-1 systemd.hostname=m1 "
    "systemd.show_status=auto rd.udev.log_level=3 net.ifnames=0 foo=bar",
    "-drive", "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device", "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev", "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon", "chardev=qmp,mode=control",
    "-chardev", "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial", "chardev:serial0",
    "-device", "virtio-serial-pci,id=virtio-serial0",
    "-chardev", "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device", "virtconsole,chardev=shell,id=backdoor",
    "-chardev", "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev", "local,id=xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    "-display", "none", "-vga", "none",
    "-device", "virtio-keyboard-pci",
    "-device", "virtio-rng-pci",
    "-rtc", "base=utc",
]

CUSTOM_KVM = [
    "qemu-system-x86_64",
    "-name", "m1,process=vmtest-m1",
    "-nodefaults", "-no-user-config", "-S",
    "-machine", "pc",
    "-accel", "kvm", "-cpu", "host",
    "-m", "777",
    "-smp", "2",
    "-kernel", "/cache/kernels/k1/vmlinuz",
    "-initrd", "/cache/kernels/k1/initrd.img",
    "-append",
    "root=/dev/vda console=ttyS0,115200 panic=-1 systemd.hostname=m1 "
    "systemd.show_status=auto rd.udev.log_level=3 net.ifnames=0 foo=bar",
    "-drive", "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device", "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev", "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon", "chardev=qmp,mode=control",
    "-chardev", "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial", "chardev:serial0",
    "-device", "virtio-serial-pci,id=virtio-serial0",
    "-chardev", "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device", "virtconsole,chardev=shell,id=backdoor",
    "-chardev", "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev", "local,id=xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device", "virtio-9p-pci,fsdev=xchg,mount_tag=xchg",
    "-display", "none", "-vga", "none",
    "-device", "virtio-keyboard-pci",
    "-device", "virtio-rng-pci",
    "-rtc", "base=utc",
]


def test_default_config_kvm() -> None:
    assert machine_argv("m1", MachineConfig(), BOOT, PATHS, "kvm") == DEFAULT_KVM


def test_default_config_tcg() -> None:
    assert machine_argv("m1", MachineConfig(), BOOT, PATHS, "tcg") == DEFAULT_TCG


def test_custom_config_tcg() -> None:
    assert machine_argv("m1", CUSTOM, BOOT, PATHS, "tcg") == CUSTOM_TCG


def test_custom_config_kvm() -> None:
    assert machine_argv("m1", CUSTOM, BOOT, PATHS, "kvm") == CUSTOM_KVM


def test_custom_qemu_binary_and_resolution() -> None:
    cfg = MachineConfig(virtualisation={"resolution": (1280, 800)})
    cfg = cfg.replace(virtualisation={"resolution": (1280, 800), "qemu": {"binary": "/opt/qemu/bin/qemu-system-x86_64"}})
    argv = machine_argv("web", cfg, BOOT, MachinePaths(Path("/s")), "kvm")
    assert argv[0] == "/opt/qemu/bin/qemu-system-x86_64"
    assert argv[1:3] == ["-name", "web,process=vmtest-web"]
    assert "VGA,xres=1280,yres=800" in argv
    assert "file=/s/web.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report" in argv


def test_argv_is_only_strings() -> None:
    for argv in (machine_argv("m1", CUSTOM, BOOT, PATHS, "kvm"), probe_argv("tcg", BOOT)):
        assert all(isinstance(arg, str) for arg in argv)


# -- kernel_params ---------------------------------------------------------------


def test_kernel_params_graphics_serial_console_last() -> None:
    params = kernel_params("m1", MachineConfig(kernel_params=["quiet", "foo=bar"]))
    assert params == [
        "root=/dev/vda",
        "console=tty0",
        "console=ttyS0,115200",
        "panic=-1",
        "systemd.hostname=m1",
        "systemd.show_status=auto",
        "rd.udev.log_level=3", "net.ifnames=0",
        "quiet",
        "foo=bar",
    ]
    consoles = [p for p in params if p.startswith("console=")]
    assert consoles[-1] == "console=ttyS0,115200"


def test_kernel_params_no_graphics_only_serial() -> None:
    params = kernel_params("db", MachineConfig(virtualisation={"graphics": False}, kernel_params="a=1 b"))
    assert [p for p in params if p.startswith("console=")] == ["console=ttyS0,115200"]
    assert params[-2:] == ["a=1", "b"]
    assert "systemd.hostname=db" in params


def test_user_kernel_params_come_after_builtin_ones() -> None:
    # The kernel honours the last occurrence, so the user's params must win.
    params = kernel_params("m1", MachineConfig(kernel_params=["console=ttyS1", "panic=0"]))
    assert params[-2:] == ["console=ttyS1", "panic=0"]
    assert params.index("panic=-1") < params.index("panic=0")


# -- probe and accel -------------------------------------------------------------


def test_probe_argv() -> None:
    argv = probe_argv("tcg", BOOT)
    assert argv == [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-machine", "pc",
        "-accel", "tcg,thread=multi", "-cpu", "max",
        "-m", "256", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", "/cache/kernels/k1/vmlinuz", "-initrd", "/cache/kernels/k1/initrd.img",
        "-append", "console=ttyS0 vmtest.probe panic=-1 quiet",
    ]
    append = argv[argv.index("-append") + 1].split()
    assert "vmtest.probe" in append
    assert "-S" not in argv


def test_probe_argv_kvm() -> None:
    argv = probe_argv("kvm", BOOT, qemu="q")
    assert argv[0] == "q"
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"


def test_accel_args() -> None:
    assert accel_args("kvm") == ["-accel", "kvm", "-cpu", "host"]
    assert accel_args("tcg") == ["-accel", "tcg,thread=multi", "-cpu", "max"]


@pytest.mark.parametrize("accel", ["hvf", "auto", "", "KVM"])
def test_accel_args_rejects_unknown(accel: str) -> None:
    with pytest.raises(ValueError, match="unknown accelerator"):
        accel_args(accel)
    with pytest.raises(ValueError):
        machine_argv("m1", MachineConfig(), BOOT, PATHS, accel)


def test_machine_paths() -> None:
    assert root_disk("m1", MachineConfig(), PATHS) == Path("/run/vmtest/m1/m1.qcow2")
    assert root_disk("m1", MachineConfig(virtualisation={"disk_image": None}), PATHS) is None
    assert PATHS.qmp == Path("/run/vmtest/m1/qmp.sock")
    assert PATHS.shell == Path("/run/vmtest/m1/shell.sock")
    assert PATHS.serial == Path("/run/vmtest/m1/serial.sock")
    assert PATHS.qemu_log == Path("/run/vmtest/m1/qemu.log")
    assert PATHS.console_log == Path("/run/vmtest/m1/console.log")
