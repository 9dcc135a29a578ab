"""The host/guest contract: every name, path and address both sides must agree on.

The host writes QEMU's command line and per-boot files; the image carries
units and scripts that expect them. Whatever one side names and the other
relies on is declared here once: the files vmtest puts into every image, the
9p tags and their mount options, the exchange directory's files, the
user-mode NIC, the VLAN addressing scheme and the kernel parameters the
stage-1 init and the units read.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_QEMU_BINARY = "qemu-system-x86_64"

# -- files vmtest adds to every image (package data in vmtest/image/guest/) ------------


@dataclass(frozen=True)
class GuestFile:
    """One file of ``vmtest/image/guest`` and where it goes in the image."""

    name: str  # package data name
    path: str  # absolute path in the guest
    mode: int = 0o644
    enable: bool = False  # a unit to enable at build time


GUEST_FILES = (
    GuestFile("backdoor", "/usr/lib/vmtest/backdoor", 0o755),
    GuestFile("vmtest-backdoor.service", "/etc/systemd/system/vmtest-backdoor.service", enable=True),
    GuestFile("vmtest-setup.service", "/etc/systemd/system/vmtest-setup.service", enable=True),
    GuestFile("vmtest-interactive.service", "/etc/systemd/system/vmtest-interactive.service", enable=True),
    GuestFile("vmtest-attach.service", "/etc/systemd/system/vmtest-attach.service", enable=True),
)
# The backdoor's virtio serial port (``image/guest/backdoor`` finds its device by this name).
BACKDOOR_PORT = "org.vmtest.backdoor"
# Generated at build time from the constants below (see xchg_mount_unit()).
XCHG_MOUNT_UNIT = "tmp-xchg.mount"

# -- 9p shares ----------------------------------------------------------------------------

XCHG_TAG = "xchg"  # the exchange directory: per-boot set-up, copies, certificates
XCHG_GUEST_PATH = "/tmp/xchg"
XCHG_MSIZE = 262144
SHARED_TAG = "shared"  # run-vm's SHARED_DIR
SHARED_GUEST_PATH = "/tmp/shared"
RESERVED_TAGS = (XCHG_TAG, SHARED_TAG)


def mount_options_9p(msize: int | None = None) -> str:
    """The 9p mount options vmtest uses everywhere (``msize`` omitted: the kernel default)."""
    size = f",msize={msize}" if msize else ""
    return f"trans=virtio,version=9p2000.L{size},cache=none"


# busybox-static is in every image: after a restore, statically linked tools are several times
# cheaper to exec than coreutils' and util-linux's (measured under TCG: mount ~1.4 s vs ~0.2 s, date
# ~0.8 s vs ~0.3 s). Guest shell snippets take ``prefix="$bb "`` after BUSYBOX_VAR has set it.
GUEST_BUSYBOX = "/bin/busybox"
BUSYBOX_VAR = f"bb=; [[ -x {GUEST_BUSYBOX} ]] && bb={GUEST_BUSYBOX}"


def mount_9p(tag: str, target: str, msize: int | None = None, prefix: str = "") -> str:
    """Guest shell: mount the 9p share ``tag`` at ``target`` (``prefix``: e.g. ``"$bb "``)."""
    return f"{prefix}mount -t 9p -o {mount_options_9p(msize)} {shlex.quote(tag)} {shlex.quote(target)}"


def mounted(target: str) -> str:
    """Guest bash: true when something is mounted at ``target`` (no exec: a builtin read of /proc/mounts)."""
    return f'[[ $(< /proc/mounts) == *" {target} "* ]]'


def ensure_mounted(tag: str, target: str, msize: int | None = None, prefix: str = "") -> str:
    """Guest bash: mount the 9p share ``tag`` at ``target`` unless something is mounted there, making
    the mount point if it is gone (a booted snapshot is saved with its shares unmounted, early in the
    boot: ``systemd-tmpfiles --remove`` may then delete an empty mount point under ``/tmp``). Builtins
    unless there is something to do."""
    q = shlex.quote(target)
    mount = mount_9p(tag, target, msize, prefix)
    return f"{mounted(target)} || {{ [[ -d {q} ]] || {prefix}mkdir -p {q}; {mount}; }}"


def ensure_xchg_mounted(prefix: str = "") -> str:
    """Guest bash: mount the exchange directory unless it is (exit status 0 when it is there)."""
    return ensure_mounted(XCHG_TAG, XCHG_GUEST_PATH, XCHG_MSIZE, prefix)


# The units between systemd's start and the backdoor (vmtest-setup.service, the backdoor itself) run
# niced: systemd dispatches queued jobs of one unit type by CPU weight, then nice value, then name, so
# they come first among the early jobs (under TCG each job systemd starts is a fork of PID 1 costing
# ~0.1 s; "vmtest-*" would come after every "systemd-*"). The exchange directory's mount and the API file
# systems wait for the backdoor instead (rootfs.AFTER_BACKDOOR_UNITS).
# The set-up is short-lived; the backdoor sets itself back to nice 0 at once, so test
# commands do not inherit it. (A StartupCPUWeight= would order them too, but it turns on the cgroup
# cpu controller, and udev's module loading then fell behind the tests' first commands.)
CRITICAL_NICE = -5


def xchg_mount_unit() -> str:
    """The systemd mount unit that mounts the exchange directory early in every boot."""
    return (
        "[Unit]\n"
        'Description=vmtest host exchange directory (9p share "xchg")\n'
        "DefaultDependencies=no\n"
        # Not needed before the first test command (vmtest's copies mount it themselves when it is not yet
        # there, ensure_xchg_mounted): mounted once the backdoor has started, not competing with it.
        "After=vmtest-backdoor.service\n"
        "Before=local-fs.target umount.target\n"
        "Conflicts=umount.target\n"
        "ConditionPathExists=/sys/bus/virtio/drivers/9pnet_virtio\n\n"
        "[Mount]\n"
        f"What={XCHG_TAG}\n"
        f"Where={XCHG_GUEST_PATH}\n"
        "Type=9p\n"
        f"Options={mount_options_9p(XCHG_MSIZE)}\n\n"
        "[Install]\n"
        "WantedBy=local-fs.target\n"
    )


# Files the host writes into the exchange directory before a boot. QEMU hands them to the guest as
# fw_cfg entries too (read at launch): the set-up reads them from sysfs without waiting for the 9p
# mount (which cost ~0.6 s on the way to the backdoor).
SETUP_NAME = ".vmtest-setup.sh"  # run by vmtest-setup.service
CERTS_NAME = ".vmtest-ca-certificates.crt"
FW_CFG_SETUP = "opt/org.vmtest/setup"  # the fw_cfg entry of SETUP_NAME
FW_CFG_CERTS = "opt/org.vmtest/certs"  # the fw_cfg entry of CERTS_NAME (use_host_certs)
FW_CFG_SYSFS = "/sys/firmware/qemu_fw_cfg/by_name"  # qemu_fw_cfg's view: <this>/<entry name>/raw


def fw_cfg_guest_path(entry: str) -> str:
    """Where the guest reads the fw_cfg ``entry`` (the qemu_fw_cfg module is in stage 1's base group)."""
    return f"{FW_CFG_SYSFS}/{entry}/raw"


SETUP_UNIT = "vmtest-setup.service"
# Written by the set-up script as its last step: the host's check that it succeeded is a shell
# builtin (`test -e`), not an exec of systemctl (~0.2 s under TCG, on the first command of every boot).
SETUP_DONE = "/run/vmtest-setup.done"
# The console log level the backdoor sets when it greets the host (image/guest/backdoor): once booted, the
# kernel prints only errors and worse on the consoles (its boot chatter - drm, ACPI, floppy - would
# interleave with what a test prints there and fill the console tails of errors); everything stays in
# the journal and `dmesg`. A test that wants it all back: `dmesg -n 8`.
CONSOLE_LOGLEVEL = 4

# -- kernel parameters read inside the guest ---------------------------------------------

MODULES_LABEL = "vmtest-modules"  # the kernel's module disk; stage 1 mounts it on /lib/modules/<release>
ROOT_LABEL = "vmtest-root"  # the ext4 label of every root file system vmtest builds; stage 1 finds the root by it
TMPFS_ROOT_PARAM = "vmtest.root=tmpfs-overlay"  # stage 1: the image read-only under a tmpfs
INTERACTIVE_PARAM = "vmtest.interactive"  # vmtest-interactive.service: root shell on ttyS0
PROBE_PARAM = "vmtest.probe"  # stage 1: print PROBE_OK and power off (accelerator probe)
PROBE_OK = "PROBE-OK"

# Stage 1 loads the modules of the group "base" and of the groups this parameter names
# (``vmtest.modules=virtio,net``; without it, every group): one initrd per kernel serves every
# configuration, and a boot loads only what its configuration needs.
MODULES_PARAM = "vmtest.modules"
STAGE1_BASE_GROUP = "base"
# group -> the modules stage 1 loads for it (each with its dependencies), in this order.
STAGE1_MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    # Always: the PCI transport, the backdoor's port, the root's file system, the exchange directory,
    # the per-run set-up's fw_cfg entries; and the modules systemd itself loads first thing on every
    # boot (autofs4, ip_tables, virtio_rng for the RNG device every machine has): systemd starts the
    # kmod library only for a module that is not loaded yet, and under TCG that start, at the head of
    # the boot's critical path, cost more than these small modules' loading here.
    STAGE1_BASE_GROUP: (
        "virtio_pci",
        "virtio_console",
        "ext4",
        "9pnet_virtio",
        "9p",
        "qemu_fw_cfg",
        "autofs4",
        "ip_tables",
        "virtio_rng",
    ),
    # The module disk (always virtio-blk, whatever the disks' interface).
    "modules": ("virtio_blk",),
    # Disks, by qemu.disk_interface (root, empty disks and drives share the interface).
    "virtio": ("virtio_blk",),
    # (sd_mod before ata_piix, as before the groups: loaded after it, sd_mod bound the two IDE disks
    # in the wrong order and the root became sdb)
    "scsi": ("virtio_scsi", "sd_mod"),
    "ide": ("sd_mod", "ata_piix"),
    # disk_image=None: the image read-only under a tmpfs overlay.
    "overlay": ("overlay",),
    # NICs (VLANs, user-mode networking): the per-run set-up names and addresses them before udev runs.
    "net": ("virtio_net",),
    # graphics: the std VGA's DRM driver, so that the framebuffer console has its final resolution
    # before the first command (its take-over later stalls VT switches for many seconds under TCG).
    "display": ("bochs",),
}

# -- networks -------------------------------------------------------------------------------

USER_NET = "10.0.2.0/24"
USER_NIC_MAC = "52:54:00:12:34:56"
USER_GUEST_IP = "10.0.2.15"
USER_NIC_NAME = "eth0"


def vlan_mac(vlan: int, node: int) -> str:
    """The MAC of node ``node`` on VLAN ``vlan`` (hex octets: NixOS's decimal ones break above 99)."""
    return f"52:54:00:12:{vlan:02x}:{node:02x}"


def vlan_ipv4(vlan: int, node: int) -> str:
    return f"192.168.{vlan}.{node}"


def vlan_ipv6(vlan: int, node: int) -> str:
    return f"2001:db8:{vlan:x}::{node:x}"


def find_nic(mac: str, var: str) -> list[str]:
    """Guest sh lines: set the shell variable ``var`` to the name of the interface with MAC ``mac``, or fail
    saying so. Builtins only (POSIX sh): under TCG every exec of the early boot costs ~0.1 s."""
    return [
        f"{var}=",
        "for d in /sys/class/net/*; do",
        f'    read -r a < "$d/address" 2>/dev/null || continue; if [ "$a" = {mac} ]; then {var}=${{d##*/}}; fi',
        "done",
        f'[ -n "${var}" ] || {{ echo "vmtest-setup: no interface with MAC {mac}" >&2; exit 1; }}',
    ]


def ip_batch(commands: Sequence[str]) -> list[str]:
    """Guest sh lines: ``commands`` (ip's arguments; shell variables are expanded) run in order by one ip
    process (iproute2's ``-batch``, which stops at the first failing command with a non-zero status)."""
    return ["ip -batch - <<VMTEST_IP", *commands, "VMTEST_IP"]
