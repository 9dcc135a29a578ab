"""The per-boot set-up script the guest runs before ``sysinit.target``.

The image stays the same for every run; what differs per run (network
addresses, shares, extra mounts, the root disk's size, the host's CA bundle)
is written by the host into the exchange directory as ``.vmtest-setup.sh``,
handed to the guest as a fw_cfg entry (no wait for the 9p mount) and run by
``vmtest-setup.service``. Everything here is pure text assembly
(unit-tested); failures make the unit fail, and ``Machine.connect`` reports
its journal.
"""

from __future__ import annotations

import math
import shlex

from vmtest.config.machine import MachineConfig
from vmtest.core.contract import (
    BUSYBOX_VAR,
    FW_CFG_CERTS,
    SETUP_DONE,
    USER_GUEST_IP,
    USER_NIC_MAC,
    USER_NIC_NAME,
    XCHG_GUEST_PATH,
    ensure_mounted,
    ensure_xchg_mounted,
    find_nic,
    fw_cfg_guest_path,
    ip_batch,
    mount_9p,
)


def script(
    config: MachineConfig,
    hostname: str,
    network: str = "",
    grow_root: bool = False,
    certs: bool = False,
    user_net: bool | None = None,
    extra: str = "",
    hosts: str = "",
) -> str:
    """The whole script; ``network`` is :func:`vmtest.network.setup_script`'s part (VLAN NICs, /etc/hosts).

    ``user_net`` overrides whether the user-mode NIC exists (run-vm always adds it); ``extra`` is
    appended as is.
    """
    virt = config.virtualisation
    has_user_net = virt.user_network if user_net is None else user_net
    q = shlex.quote
    # (echo, not hostname(1): a builtin costs no exec, ~75 ms under TCG)
    lines = ["set -eu", f"echo {q(hostname)} > /proc/sys/kernel/hostname", f"echo {q(hostname)} > /etc/hostname"]
    for tag, share in virt.shared_directories.items():
        lines += [
            f"mkdir -p {q(share.target)}",
            mount_9p(tag, share.target, virt.msize),
        ]
    for target, fs in virt.file_systems.items():
        opts = f" -o {q(','.join(fs.options))}" if fs.options else ""
        fstype = "" if fs.fs_type == "auto" else f" -t {q(fs.fs_type)}"
        lines += [f"mkdir -p {q(target)}", f"mount{fstype}{opts} {q(fs.device)} {q(target)}"]
    lines += boot_mounts(config)
    if grow_root:
        lines += grow_root_lines(virt.boots_from_disk)
    if certs:
        lines += ["mkdir -p /etc/ssl/certs", f"cp {fw_cfg_guest_path(FW_CFG_CERTS)} /etc/ssl/certs/ca-certificates.crt"]
    if has_user_net:
        lines += find_nic(USER_NIC_MAC, "user_nic")
        lines.append('ip link set dev "$user_nic" name vmtest0')
    if network:
        lines.append(network.removeprefix("set -eu\n").rstrip("\n"))
    if has_user_net:
        commands = [
            f"link set dev vmtest0 name {USER_NIC_NAME}",
            f"link set dev {USER_NIC_NAME} up",
            f"addr add {USER_GUEST_IP}/24 dev {USER_NIC_NAME}",
        ]
        if not virt.restrict_network:
            commands.append(f"route add default via 10.0.2.2 dev {USER_NIC_NAME}")
        lines += ip_batch(commands)
        if not virt.restrict_network:
            lines.append("echo 'nameserver 10.0.2.3' > /etc/resolv.conf")
    if extra:
        lines.append(extra.rstrip("\n"))
    if hosts:
        lines.append(write_hosts(hosts))
    lines.append(f": > {SETUP_DONE}")  # the host's sign that every step above succeeded
    return "\n".join(lines) + "\n"


BY_LABEL = "/dev/disk/by-label/"


def grow_root_lines(partitioned: bool) -> list[str]:
    """Grow the root file system to its disk; on the bootable disk (``partitioned``) the root partition
    (the last one) first: the backup GPT moved to the disk's new end, the partition extended to it
    (``sfdisk``: the fdisk package is in such an image) and the kernel told (``partx``, allowed while
    mounted)."""
    fail = '{ echo "vmtest-setup: growing the root file system ($root_dev) failed" >&2; exit 1; }'
    lines = ["root_dev=$(findmnt -no SOURCE /)"]
    if partitioned:
        lines += [
            'part=$(cat "/sys/class/block/${root_dev#/dev/}/partition")',
            'disk=/dev/$(basename "$(readlink -f "/sys/class/block/${root_dev#/dev/}/..")")',
            '{ sfdisk -q --relocate gpt-bak-std "$disk" && echo ", +" | sfdisk -q --no-reread --no-tell-kernel '
            f'-N "$part" "$disk" && partx -u -n "$part" "$disk"; }} >/dev/null 2>&1 || {fail}',
        ]
    lines.append(f'resize2fs "$root_dev" >/dev/null 2>&1 || {fail}')
    return lines


def boot_mounts(config: MachineConfig) -> list[str]:
    """A machine booted through GRUB: ``boot_partition`` mounted at /boot (vfat, found by label without
    udev, which has not run yet), and ``boot_loader_device`` written to /etc/vmtest/boot-loader-device."""
    virt = config.virtualisation
    if not virt.boots_from_disk:
        return []
    q = shlex.quote
    lines = ["mkdir -p /etc/vmtest", f"echo {q(virt.boot_loader_device)} > /etc/vmtest/boot-loader-device"]
    part = virt.boot_partition
    if part is not None:
        source = f"LABEL={part.removeprefix(BY_LABEL)}" if part.startswith(BY_LABEL) else part
        lines.append(
            f"mount -t vfat {q(source)} /boot || "
            f"{{ echo {q(f'vmtest-setup: mounting the boot partition {part} on /boot failed')} >&2; exit 1; }}"
        )
    return lines


def write_hosts(hosts: str) -> str:
    """Guest shell (sh or bash): ``/etc/hosts`` becomes ``hosts``, through the shell's own ``printf``
    (no exec: after a restore every exec is slow)."""
    return f"printf %s {shlex.quote(hosts)} > /etc/hosts"


# How long the boot before a snapshot's save may go on settling (see :func:`settle`).
SETTLE_SECONDS = 30


def settle(seconds: int = SETTLE_SECONDS) -> str:
    """Guest shell, before a booted snapshot is saved: wait until systemd has started everything the boot
    queued (``is-system-running --wait``: ``running`` or ``degraded``), for at most ``seconds``. A snapshot
    saved at the backdoor's first answer left the rest of the boot (a test's own services among it) to be
    done again after every restore; saved settled, a restored guest has its services up. Never fails: a
    boot that does not settle in time is saved as it is."""
    return f"timeout {seconds} systemctl is-system-running --wait >/dev/null 2>&1; true"


def before_save(config: MachineConfig) -> str:
    """Guest shell, before a booted snapshot is saved: flush, and unmount the 9p shares (QEMU does not
    migrate a machine with a mounted 9p export)."""
    targets = [shlex.quote(share.target) for share in config.virtualisation.shared_directories.values()]
    return "; ".join(
        [
            BUSYBOX_VAR,
            "sync",
            *(f"$bb umount {t}" for t in targets),
            f"$bb umount {XCHG_GUEST_PATH} 2>/dev/null || true",
            "sync",
        ]
    )


def after_restore(config: MachineConfig, clock: float, hosts: str) -> str:
    """Guest shell, once a snapshot is restored (or saved): what the snapshot cannot hold, in one command
    (the first commands after a restore are the slowest): the wall clock (``clock``: the host's time),
    the 9p shares mounted again (the exchange directory in the background), and ``/etc/hosts`` (it names
    the other nodes of this run's network)."""
    virt = config.virtualisation
    # busybox's date takes whole seconds: the next one, as the command reaches the guest a moment later
    lines = [
        BUSYBOX_VAR,
        f"$bb date -u -s @{math.ceil(clock)} >/dev/null || {{ echo 'vmtest: setting the clock failed' >&2; exit 90; }}",
        # in the background: the first command after a restore answers ~0.2 s sooner (measured: 0.87 s
        # instead of 1.05 s, restore to the first command, medians of 5 pairs); vmtest's own copies
        # mount it themselves if they come first (ensure_xchg_mounted)
        f"{{ {ensure_xchg_mounted('$bb ')}; }} >/dev/null 2>&1 &",
    ]
    for tag, share in virt.shared_directories.items():
        lines.append(ensure_mounted(tag, share.target, virt.msize, "$bb "))
    if hosts:
        lines.append(write_hosts(hosts))
    return "\n".join(lines) + "\n"
