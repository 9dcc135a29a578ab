"""QEMU's command line, pinned literally: any change shows up as a diff here."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmtest
from vmtest.config.machine import MachineConfig
from vmtest.core.contract import FW_CFG_SETUP, STAGE1_BASE_GROUP, STAGE1_MODULE_GROUPS, fw_cfg_guest_path
from vmtest.vm.argv import (
    NO_IDE_PARAM,
    Boot,
    Launch,
    accel_args,
    kernel_params,
    machine_argv,
    probe_argv,
    stage1_groups,
)
from vmtest.vm.paths import MachinePaths, root_disk

BOOT = Boot(kernel=Path("/cache/kernels/k1/vmlinuz"), initrd=Path("/cache/kernels/k1/initrd.img"))
PATHS = MachinePaths(Path("/run/vmtest/m1"))
CUSTOM = MachineConfig(
    suite="bookworm",
    kernel_params=["foo=bar"],
    virtualisation={"graphics": False, "memory_size": 777, "cores": 2},
)

DEFAULT_KVM = [
    "qemu-system-x86_64",
    "-name",
    "m1,process=vmtest-m1",
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine",
    "pc",
    "-accel",
    "kvm",
    "-cpu",
    "host",
    "-m",
    "1024",
    "-smp",
    "1",
    "-kernel",
    "/cache/kernels/k1/vmlinuz",
    "-initrd",
    "/cache/kernels/k1/initrd.img",
    "-append",
    "root=LABEL=vmtest-root console=tty0 console=ttyS0,115200 panic=-1 "
    "systemd.show_status=auto loglevel=6 rd.udev.log_level=3 net.ifnames=0 vmtest.modules=virtio,display "
    "modprobe.blacklist=ata_piix,ata_generic",
    "-drive",
    "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device",
    "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev",
    "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial",
    "chardev:serial0",
    "-device",
    "virtio-serial-pci,id=virtio-serial0",
    "-chardev",
    "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=shell,name=org.vmtest.backdoor,id=backdoor",
    "-chardev",
    "socket,id=attach,path=/run/vmtest/m1/attach.sock,server=on,wait=off",
    "-device",
    "virtconsole,chardev=attach,id=attach",
    "-chardev",
    "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev",
    "local,id=fs-xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device",
    "virtio-9p-pci,fsdev=fs-xchg,mount_tag=xchg",
    "-fw_cfg",
    "name=opt/org.vmtest/setup,file=/run/vmtest/m1/xchg/.vmtest-setup.sh",
    "-display",
    "none",
    "-device",
    "VGA,xres=1024,yres=768",
    "-device",
    "virtio-keyboard-pci",
    "-device",
    "virtio-rng-pci",
    "-device",
    "virtio-balloon-pci,free-page-reporting=on",
    "-device",
    "vmgenid,guid=auto",
    "-rtc",
    "base=utc",
]

DEFAULT_TCG = [
    "qemu-system-x86_64",
    "-name",
    "m1,process=vmtest-m1",
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine",
    "pc",
    "-accel",
    "tcg,thread=multi,tb-size=128",
    "-cpu",
    "max,-erms,-fsrm",
    "-m",
    "1024",
    "-smp",
    "1",
    "-kernel",
    "/cache/kernels/k1/vmlinuz",
    "-initrd",
    "/cache/kernels/k1/initrd.img",
    "-append",
    "root=LABEL=vmtest-root console=tty0 console=ttyS0,115200 panic=-1 "
    "systemd.show_status=auto loglevel=6 rd.udev.log_level=3 net.ifnames=0 vmtest.modules=virtio,display "
    "modprobe.blacklist=ata_piix,ata_generic module_blacklist=kvm_amd,kvm_intel acpi=noirq cryptomgr.notests",
    "-drive",
    "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device",
    "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev",
    "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial",
    "chardev:serial0",
    "-device",
    "virtio-serial-pci,id=virtio-serial0",
    "-chardev",
    "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=shell,name=org.vmtest.backdoor,id=backdoor",
    "-chardev",
    "socket,id=attach,path=/run/vmtest/m1/attach.sock,server=on,wait=off",
    "-device",
    "virtconsole,chardev=attach,id=attach",
    "-chardev",
    "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev",
    "local,id=fs-xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device",
    "virtio-9p-pci,fsdev=fs-xchg,mount_tag=xchg",
    "-fw_cfg",
    "name=opt/org.vmtest/setup,file=/run/vmtest/m1/xchg/.vmtest-setup.sh",
    "-display",
    "none",
    "-device",
    "VGA,xres=1024,yres=768",
    "-device",
    "virtio-keyboard-pci",
    "-device",
    "virtio-rng-pci",
    "-device",
    "virtio-balloon-pci,free-page-reporting=on",
    "-device",
    "vmgenid,guid=auto",
    "-rtc",
    "base=utc",
]

CUSTOM_TCG = [
    "qemu-system-x86_64",
    "-name",
    "m1,process=vmtest-m1",
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine",
    "pc",
    "-accel",
    "tcg,thread=multi,tb-size=128",
    "-cpu",
    "max,-erms,-fsrm",
    "-m",
    "777",
    "-smp",
    "2",
    "-kernel",
    "/cache/kernels/k1/vmlinuz",
    "-initrd",
    "/cache/kernels/k1/initrd.img",
    "-append",
    "root=LABEL=vmtest-root console=ttyS0,115200 panic=-1 "
    "systemd.show_status=auto loglevel=6 rd.udev.log_level=3 net.ifnames=0 vmtest.modules=virtio "
    "modprobe.blacklist=ata_piix,ata_generic module_blacklist=kvm_amd,kvm_intel acpi=noirq cryptomgr.notests foo=bar",
    "-drive",
    "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device",
    "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev",
    "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial",
    "chardev:serial0",
    "-device",
    "virtio-serial-pci,id=virtio-serial0",
    "-chardev",
    "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=shell,name=org.vmtest.backdoor,id=backdoor",
    "-chardev",
    "socket,id=attach,path=/run/vmtest/m1/attach.sock,server=on,wait=off",
    "-device",
    "virtconsole,chardev=attach,id=attach",
    "-chardev",
    "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev",
    "local,id=fs-xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device",
    "virtio-9p-pci,fsdev=fs-xchg,mount_tag=xchg",
    "-fw_cfg",
    "name=opt/org.vmtest/setup,file=/run/vmtest/m1/xchg/.vmtest-setup.sh",
    "-display",
    "none",
    "-vga",
    "none",
    "-device",
    "virtio-keyboard-pci",
    "-device",
    "virtio-rng-pci",
    "-device",
    "virtio-balloon-pci,free-page-reporting=on",
    "-device",
    "vmgenid,guid=auto",
    "-rtc",
    "base=utc",
]

CUSTOM_KVM = [
    "qemu-system-x86_64",
    "-name",
    "m1,process=vmtest-m1",
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine",
    "pc",
    "-accel",
    "kvm",
    "-cpu",
    "host",
    "-m",
    "777",
    "-smp",
    "2",
    "-kernel",
    "/cache/kernels/k1/vmlinuz",
    "-initrd",
    "/cache/kernels/k1/initrd.img",
    "-append",
    "root=LABEL=vmtest-root console=ttyS0,115200 panic=-1 systemd.show_status=auto loglevel=6 rd.udev.log_level=3 "
    "net.ifnames=0 vmtest.modules=virtio modprobe.blacklist=ata_piix,ata_generic foo=bar",
    "-drive",
    "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
    "-device",
    "virtio-blk-pci,drive=root,serial=root,bootindex=1",
    "-chardev",
    "socket,id=qmp,path=/run/vmtest/m1/qmp.sock,server=on,wait=off",
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    "socket,id=serial0,path=/run/vmtest/m1/serial.sock,server=on,wait=off",
    "-serial",
    "chardev:serial0",
    "-device",
    "virtio-serial-pci,id=virtio-serial0",
    "-chardev",
    "socket,id=shell,path=/run/vmtest/m1/shell.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=shell,name=org.vmtest.backdoor,id=backdoor",
    "-chardev",
    "socket,id=attach,path=/run/vmtest/m1/attach.sock,server=on,wait=off",
    "-device",
    "virtconsole,chardev=attach,id=attach",
    "-chardev",
    "socket,id=qga0,path=/run/vmtest/m1/qga.sock,server=on,wait=off",
    "-device",
    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    "-fsdev",
    "local,id=fs-xchg,path=/run/vmtest/m1/xchg,security_model=none",
    "-device",
    "virtio-9p-pci,fsdev=fs-xchg,mount_tag=xchg",
    "-fw_cfg",
    "name=opt/org.vmtest/setup,file=/run/vmtest/m1/xchg/.vmtest-setup.sh",
    "-display",
    "none",
    "-vga",
    "none",
    "-device",
    "virtio-keyboard-pci",
    "-device",
    "virtio-rng-pci",
    "-device",
    "virtio-balloon-pci,free-page-reporting=on",
    "-device",
    "vmgenid,guid=auto",
    "-rtc",
    "base=utc",
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
    cfg = cfg.replace(
        virtualisation={"resolution": (1280, 800), "qemu": {"binary": "/opt/qemu/bin/qemu-system-x86_64"}}
    )
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
    params = kernel_params(MachineConfig(kernel_params=["quiet", "foo=bar"]))
    assert params == [
        "root=LABEL=vmtest-root",
        "console=tty0",
        "console=ttyS0,115200",
        "panic=-1",
        "systemd.show_status=auto",
        "loglevel=6",
        "rd.udev.log_level=3",
        "net.ifnames=0",
        "vmtest.modules=virtio,display",
        "modprobe.blacklist=ata_piix,ata_generic",
        "quiet",
        "foo=bar",
    ]
    consoles = [p for p in params if p.startswith("console=")]
    assert consoles[-1] == "console=ttyS0,115200"


def test_kernel_params_no_graphics_only_serial() -> None:
    params = kernel_params(MachineConfig(virtualisation={"graphics": False}, kernel_params="a=1 b"))
    assert [p for p in params if p.startswith("console=")] == ["console=ttyS0,115200"]
    assert params[-2:] == ["a=1", "b"]
    assert not any(p.startswith("systemd.hostname") for p in params)  # the name comes with the per-run set-up


def test_user_kernel_params_come_after_builtin_ones() -> None:
    # The kernel honours the last occurrence, so the user's params must win.
    params = kernel_params(MachineConfig(kernel_params=["console=ttyS1", "panic=0"]))
    assert params[-2:] == ["console=ttyS1", "panic=0"]
    assert params.index("panic=-1") < params.index("panic=0")


# -- stage-1 module groups (vmtest.modules=) ----------------------------------------


def _modules(params: list[str]) -> list[str]:
    [param] = [p for p in params if p.startswith("vmtest.modules=")]
    return param.removeprefix("vmtest.modules=").split(",")


@pytest.mark.parametrize(
    ("virtualisation", "groups"),
    [
        ({}, ["virtio", "display"]),
        ({"graphics": False}, ["virtio"]),
        ({"graphics": False, "qemu": {"disk_interface": "scsi"}}, ["scsi", "modules"]),
        ({"qemu": {"disk_interface": "ide"}}, ["ide", "modules", "display"]),
        ({"graphics": False, "disk_image": None}, ["virtio", "overlay"]),
        ({"graphics": False, "forward_ports": [{"host_port": 2222, "guest_port": 22}]}, ["virtio", "net"]),
        ({"graphics": False, "qemu": {"networking_options": ["-nic user,model=virtio-net-pci"]}}, ["virtio", "net"]),
        (
            {
                "qemu": {"disk_interface": "scsi"},
                "disk_image": None,
                "forward_ports": [{"host_port": 1, "guest_port": 2}],
            },
            ["scsi", "modules", "overlay", "net", "display"],
        ),
    ],
)
def test_stage1_module_groups_follow_the_config(virtualisation: dict[str, object], groups: list[str]) -> None:
    cfg = MachineConfig(virtualisation=virtualisation)
    assert stage1_groups(cfg) == groups
    assert _modules(kernel_params(cfg)) == groups
    # every group the host asks for is one the initrd has; "base" is always loaded, never named
    assert set(groups) <= set(STAGE1_MODULE_GROUPS) - {STAGE1_BASE_GROUP}


def test_stage1_net_group_only_with_nics() -> None:
    # the default vlans=[1] gives NICs only inside a test network: the launch says whether there are any
    cfg = MachineConfig(virtualisation={"graphics": False})
    assert "net" not in _modules(kernel_params(cfg))
    assert "net" in _modules(kernel_params(cfg, nics=True))
    alone = _after(machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg"), "-append")[0]
    assert "vmtest.modules=virtio " in alone + " "
    in_network = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg", Launch(network=("-device", "virtio-net-pci")))
    assert "vmtest.modules=virtio,net " in _after(in_network, "-append")[0] + " "
    run_vm = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg", Launch(user_net=True))
    assert "vmtest.modules=virtio,net " in _after(run_vm, "-append")[0] + " "


def test_user_kernel_params_can_override_the_module_groups() -> None:
    # the stage-1 init takes the last vmtest.modules=, and the user's params come last
    params = kernel_params(MachineConfig(kernel_params=["vmtest.modules=virtio,net,display"]))
    assert [p for p in params if p.startswith("vmtest.modules=")][-1] == "vmtest.modules=virtio,net,display"


# -- probe and accel -------------------------------------------------------------


def test_probe_argv() -> None:
    argv = probe_argv("tcg", BOOT)
    assert argv == [
        "qemu-system-x86_64",
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "pc",
        "-accel",
        "tcg,thread=multi,tb-size=128",
        "-cpu",
        "max,-erms,-fsrm",
        "-m",
        "256",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        "/cache/kernels/k1/vmlinuz",
        "-initrd",
        "/cache/kernels/k1/initrd.img",
        "-append",
        "console=ttyS0 vmtest.probe panic=-1 quiet",
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
    assert accel_args("tcg") == ["-accel", "tcg,thread=multi,tb-size=128", "-cpu", "max,-erms,-fsrm"]


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


# -- every option's effect on the command line, pinned ------------------------------------

BOOT_IMG = Boot(kernel=Path("/k/vmlinux"), initrd=Path("/k/initrd"), image=Path("/cache/images/abc/root.qcow2"))


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_disks_on_scsi_with_empty_disks_and_size() -> None:
    cfg = MachineConfig(virtualisation={"qemu": {"disk_interface": "scsi"}, "empty_disk_images": [64, 32]})
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert _after(argv, "-drive") == [
        "file=/run/vmtest/m1/m1.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap,werror=report",
        "file=/run/vmtest/m1/empty0.qcow2,format=qcow2,if=none,id=empty0,werror=report",
        "file=/run/vmtest/m1/empty1.qcow2,format=qcow2,if=none,id=empty1,werror=report",
    ]
    devices = _after(argv, "-device")
    assert devices[:4] == [
        "virtio-scsi-pci,id=scsi0",
        "scsi-hd,bus=scsi0.0,drive=root,serial=root,bootindex=1",
        "scsi-hd,bus=scsi0.0,drive=empty0,serial=empty0",
        "scsi-hd,bus=scsi0.0,drive=empty1,serial=empty1",
    ]
    assert kernel_params(cfg)[0] == "root=LABEL=vmtest-root"  # sd names race; the label does not


def test_disks_on_ide_take_bus_and_unit() -> None:
    cfg = MachineConfig(virtualisation={"qemu": {"disk_interface": "ide"}, "empty_disk_images": [1, 2]})
    devices = _after(machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg"), "-device")
    assert devices[:3] == [
        "ide-hd,bus=ide.0,unit=0,drive=root,serial=root,bootindex=1",
        "ide-hd,bus=ide.0,unit=1,drive=empty0,serial=empty0",
        "ide-hd,bus=ide.1,unit=0,drive=empty1,serial=empty1",
    ]


def test_no_persistent_disk_boots_the_image_with_a_tmpfs_overlay() -> None:
    cfg = MachineConfig(virtualisation={"disk_image": None})
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert _after(argv, "-drive")[0] == "file=/cache/images/abc/root.qcow2,format=qcow2,if=none,id=root,snapshot=on"
    assert "vmtest.root=tmpfs-overlay" in kernel_params(cfg)
    assert "vmtest.root=tmpfs-overlay" not in kernel_params(MachineConfig())


def test_disk_image_template() -> None:
    cfg = MachineConfig(virtualisation={"disk_image": "/var/tmp/{name}-root.qcow2"})
    assert _after(machine_argv("web", cfg, BOOT_IMG, PATHS, "tcg"), "-drive")[0].startswith(
        "file=/var/tmp/web-root.qcow2,"
    )


def test_user_drives_and_no_default_filesystems() -> None:
    cfg = MachineConfig(
        virtualisation={
            "use_default_filesystems": False,
            "root_device": "/dev/vda",
            "qemu": {
                "drives": [
                    {
                        "file": "/d/own.qcow2",
                        "name": "own",
                        "drive_extra_opts": {"format": "qcow2"},
                        "device_extra_opts": {"serial": "mine", "bootindex": "1"},
                    }
                ]
            },
        }
    )
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert _after(argv, "-drive") == ["format=qcow2,file=/d/own.qcow2,if=none,id=drive0"]
    assert _after(argv, "-device")[0] == "virtio-blk-pci,drive=drive0,bootindex=1,serial=mine"  # keys sorted
    assert kernel_params(cfg)[0] == "root=/dev/vda"


def test_shared_directories_argv(tmp_path: Path) -> None:
    cfg = MachineConfig(
        virtualisation={
            "shared_directories": {
                "data": {"source": str(tmp_path), "target": "/mnt/data", "security_model": "mapped-xattr"}
            }
        }
    )
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert f"local,id=fs-data,path={tmp_path},security_model=mapped-xattr" in _after(argv, "-fsdev")
    assert "virtio-9p-pci,fsdev=fs-data,mount_tag=data" in _after(argv, "-device")


def test_forwarding_argv_restricted_by_default() -> None:
    cfg = MachineConfig(
        virtualisation={
            "forward_ports": [
                {"host_port": 2222, "guest_port": 22},
                {"from": "host", "proto": "udp", "host_address": "127.0.0.2", "host_port": 5353, "guest_port": 53},
                {"from": "guest", "guest_address": "10.0.2.100", "guest_port": 80, "host_port": 8080},
            ]
        }
    )
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert _after(argv, "-netdev") == [
        "user,id=user0,net=10.0.2.0/24,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,"
        "hostfwd=udp:127.0.0.2:5353-:53,guestfwd=tcp:10.0.2.100:80-cmd:nc 127.0.0.1 8080",
    ]
    assert "virtio-net-pci,netdev=user0,mac=52:54:00:12:34:56,id=nic-user" in _after(argv, "-device")
    assert "-netdev" not in machine_argv("m1", MachineConfig(), BOOT_IMG, PATHS, "tcg")


def test_unrestricted_network_argv() -> None:
    with pytest.warns(UserWarning):
        cfg = MachineConfig(
            virtualisation={"restrict_network": False, "forward_ports": [{"host_port": 2222, "guest_port": 22}]}
        )
    assert "restrict=off" in _after(machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg"), "-netdev")[0]


def test_qemu_options_networking_options_consoles_and_devices() -> None:
    cfg = MachineConfig(
        virtualisation={
            "qemu": {
                "options": ["-vga std", "-smbios 'type=1,serial=a b'"],
                "networking_options": ["-netdev user,id=x,restrict=on", "-device e1000,netdev=x"],
                "consoles": ["ttyS0,115200", "tty0"],
                "guest_agent": False,
                "virtio_keyboard": False,
            }
        }
    )
    argv = machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg")
    assert argv[-4:] == ["-vga", "std", "-smbios", "type=1,serial=a b"]
    i = argv.index("-netdev")
    assert argv[i : i + 4] == ["-netdev", "user,id=x,restrict=on", "-device", "e1000,netdev=x"]
    assert [p for p in kernel_params(cfg) if p.startswith("console=")] == ["console=ttyS0,115200", "console=tty0"]
    assert "virtio-keyboard-pci" not in argv
    assert not any("guest_agent" in a for a in argv)


def test_direct_boot_initrd(tmp_path: Path) -> None:
    initrd = tmp_path / "my-initrd"
    initrd.write_bytes(b"")
    cfg = MachineConfig(virtualisation={"direct_boot_initrd": str(initrd)})
    assert _after(machine_argv("m1", cfg, BOOT_IMG, PATHS, "tcg"), "-initrd") == [str(initrd)]


def test_the_ide_drivers_are_not_autoloaded_unless_a_disk_may_be_on_ide() -> None:
    assert NO_IDE_PARAM in kernel_params(MachineConfig())
    assert NO_IDE_PARAM in kernel_params(MachineConfig(virtualisation={"qemu": {"disk_interface": "scsi"}}))
    assert NO_IDE_PARAM not in kernel_params(MachineConfig(virtualisation={"qemu": {"disk_interface": "ide"}}))
    assert NO_IDE_PARAM not in kernel_params(MachineConfig(virtualisation={"qemu": {"options": ["-cdrom", "x.iso"]}}))


def test_the_set_up_and_the_ca_bundle_are_fw_cfg_entries_with_commas_doubled() -> None:
    paths = MachinePaths(Path("/run/a,b/m1"))
    argv = machine_argv("m1", MachineConfig(virtualisation={"use_host_certs": True}), BOOT, paths, "tcg")
    entries = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-fw_cfg"]
    assert entries == [
        "name=opt/org.vmtest/setup,file=/run/a,,b/m1/xchg/.vmtest-setup.sh",
        "name=opt/org.vmtest/certs,file=/run/a,,b/m1/xchg/.vmtest-ca-certificates.crt",
    ]


def test_the_guest_reads_the_set_up_where_the_host_puts_it() -> None:
    unit = (Path(vmtest.__file__).parent / "image" / "guest" / "vmtest-setup.service").read_text()
    raw = fw_cfg_guest_path(FW_CFG_SETUP)
    assert f"ConditionPathExists={raw}\n" in unit
    assert f"ExecStart=/bin/sh {raw}\n" in unit
    assert "qemu_fw_cfg" in STAGE1_MODULE_GROUPS[STAGE1_BASE_GROUP]


def test_the_module_disk_comes_after_every_disk_of_the_config_read_only_on_virtio() -> None:
    cfg = MachineConfig(virtualisation={"empty_disk_images": [64], "qemu": {"disk_interface": "scsi"}})
    boot = Boot(BOOT.kernel, BOOT.initrd, Path("/cache/images/i1/root.qcow2"), modules=Path("/cache/k1/modules.qcow2"))
    argv = machine_argv("m1", cfg, boot, PATHS, "tcg")
    drives = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive"]
    assert drives[-1] == "file=/cache/k1/modules.qcow2,format=qcow2,if=none,id=modules,readonly=on"
    assert [d.split(",id=")[1].split(",")[0] for d in drives] == ["root", "empty0", "modules"]
    assert "virtio-blk-pci,drive=modules,id=modules-disk" in argv
    assert "vmtest.modules=scsi,modules" in " ".join(argv)
