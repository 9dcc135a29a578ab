"""Booted snapshots: a machine saved once it has booted, restored instead of booted.

A snapshot lives in the cache (``snapshots/<key>/``): QEMU's saved state
(``state``, a migration stream), the root disk at that instant (``disk.qcow2``,
an overlay on the image: restores get a fresh overlay on top of it), the
serial console of that boot (``console.log``, replayed into a restored
machine's console so its history looks like a boot's) and, for a UEFI
machine, its variable store at that instant (``efi-vars.fd``: QEMU's state
holds the flash chip's contents, the file behind it must agree; a restore
copies it over the machine's store). A machine's TPM is in ``state``: QEMU
saves swtpm's state with the machine's (:mod:`vmtest.vm.tpm`).

The key is everything that shapes the guest's devices and its state at save
time: QEMU's command line for this machine with its per-run parts replaced by
placeholders (state directory, machine name, VLAN sockets, the cache's directory) — so every option
that changes argv is in it by construction — plus the disks' sizes (which
argv does not show), the guest's identity (the per-run set-up it runs at boot:
host name, NIC names and addresses, mounts), the image key and build id, QEMU's version,
the accelerator (and for KVM the host CPU), and for a UEFI machine the
digests of its firmware files (argv names them, a package upgrade changes
them), and for a machine with a TPM swtpm's version and the provisioning
command. What a snapshot cannot hold is
applied after the restore: the clock, the 9p shares, ``/etc/hosts`` (see
:mod:`vmtest.vm.restore`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmtest.config.machine import MachineConfig
from vmtest.core.archive import Accept, Fixup
from vmtest.core.cache import Cache, Reservation
from vmtest.core.errors import MachineError
from vmtest.core.log import log
from vmtest.core.pathattr import FileIn
from vmtest.core.proc import run, version_line
from vmtest.image import BootImage
from vmtest.vm import tpm
from vmtest.vm.accel import host_fingerprint
from vmtest.vm.argv import Launch, machine_argv
from vmtest.vm.bootargv import Boot
from vmtest.vm.channels import Channels
from vmtest.vm.paths import MachinePaths, root_disk

FORMAT = "2"  # bump when what a snapshot holds or how it is restored changes
KIND = "snapshots"
STATE = "state"
DISK = "disk.qcow2"
CONSOLE = "console.log"
EFI_VARS = "efi-vars.fd"
SAVE_TIMEOUT = 300.0
PLACEHOLDER_STATE = Path("/@state@")
PLACEHOLDER_NAME = "@name@"
PLACEHOLDER_CACHE = "@cache@"


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot entry of the cache."""

    key: str
    path: Path
    state = FileIn("path", STATE)
    disk = FileIn("path", DISK)
    console = FileIn("path", CONSOLE)
    efi_vars = FileIn("path", EFI_VARS)

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def qemu_version(binary: str) -> str:
    """``qemu-system-x86_64 --version``'s first line (a snapshot from another QEMU is not restored)."""
    return version_line(binary)


def key_argv(
    config: MachineConfig,
    image: BootImage,
    accel: str,
    network_key: tuple[str, ...],
    cache_root: Path | None = None,
) -> list[str]:
    """The machine's QEMU command line with its per-run parts as placeholders (pure), the cache's own
    directory among them: a snapshot made in one cache is the same snapshot in another (an imported or
    fetched one, on a runner whose cache lives elsewhere). The entries' keys in the paths stay."""
    paths = MachinePaths(PLACEHOLDER_STATE)
    efi_vars = PLACEHOLDER_STATE / "efi-vars.fd" if config.virtualisation.use_efi_boot else None
    boot = Boot(image.kernel, image.initrd, image.disk, efi_vars, image.modules)
    argv = host_sides(machine_argv(PLACEHOLDER_NAME, config, boot, paths, accel, Launch(network=network_key)))
    if cache_root is None:
        return argv
    root = str(cache_root).rstrip("/") + "/"
    return [arg.replace(root, PLACEHOLDER_CACHE + "/") for arg in argv]


# What only the host sees of a machine, as placeholders in a snapshot's key: the host's side of a forwarded
# port (QEMU's user network: host address and port of a hostfwd, the address and port a guestfwd's `nc`
# connects to) and the host directory of a 9p share (the guest sees its tag; shares are unmounted before a
# save and mounted again after every restore). A test that picks a free port or a temporary directory per
# run must still find its snapshot, not save another (~120 MB) every run.
_HOSTFWD = re.compile(r"(hostfwd=\w+):[^:,]*:\d+-")
_GUESTFWD = re.compile(r"(guestfwd=[^,]*?-cmd:nc) \S+ \d+")
_FSDEV = re.compile(r"^(local,id=[^,]*,path=)[^,]*")


def host_sides(argv: list[str]) -> list[str]:
    """``argv`` with what only the host sees (see above) as placeholders (pure; for snapshot keys)."""
    out = []
    for arg in argv:
        if "fwd=" in arg:
            arg = _GUESTFWD.sub(r"\1 @host@ @port@", _HOSTFWD.sub(r"\1:@host@:@port@-", arg))
        arg = _FSDEV.sub(r"\1@share@", arg)
        out.append(arg)
    return out


def firmware_digest(config: MachineConfig) -> str:
    """A UEFI machine's firmware code and variable template, as one digest ("" for any other machine)."""
    virt = config.virtualisation
    if not virt.use_efi_boot:
        return ""
    digest = hashlib.sha256()
    for path in virt.efi.files(virt.use_secure_boot):
        try:
            digest.update(Path(path).read_bytes())
        except OSError as exc:
            digest.update(f"unreadable {path}: {exc}".encode())
    return digest.hexdigest()


def host_of(config: MachineConfig, accel: str) -> str:
    """What of the host is in a snapshot's key: under KVM its CPU (a guest's saved CPU state must fit the
    host's), nothing under TCG."""
    return host_fingerprint(config.virtualisation.qemu.binary) if accel == "kvm" else ""


def disk_sizes(config: MachineConfig, image: BootImage) -> list[int]:
    """The sizes (MiB) of the root disk and the empty disks: not in argv, but the guest has seen them."""
    return [config.virtualisation.root_disk_mib(image.disk_mib), *config.virtualisation.empty_disk_images]


def snapshot_key(
    argv: list[str],
    image_key: str,
    qemu: str,
    accel: str,
    host: str = "",
    disks: list[int] | None = None,
    identity: str = "",
    firmware: str = "",
    image_build: str = "",
    tpm: str = "",
) -> str:
    """The key of a snapshot (pure): see the module docstring. ``identity``: what the guest is made at
    boot (:func:`vmtest.vm.restore.identity`); ``firmware``: :func:`firmware_digest` (only a UEFI machine's
    key has it, so the keys of the others did not change when it came); ``image_build``: the image's build id
    (:attr:`vmtest.image.store.BootImage.build_id`: a snapshot's disk is an overlay on that very build);
    ``tpm``: :func:`vmtest.vm.tpm.identity` (only a machine with a TPM has it)."""
    inputs = {
        "format": FORMAT,
        "argv": argv,
        "disks": disks or [],
        "identity": identity,
        "image": image_key,
        "qemu": qemu,
        "accel": accel,
        "host": host,
        **({"firmware": firmware} if firmware else {}),
        **({"image_build": image_build} if image_build else {}),
        **({"tpm": tpm} if tpm else {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def ineligible(name: str, config: MachineConfig, paths: MachinePaths, efi_vars: Path | None = None) -> str | None:
    """Why this machine of vmtest's image cannot start from a snapshot now (None: it can). ``efi_vars``: a
    UEFI machine's variable store."""
    virt = config.virtualisation
    if not virt.use_default_filesystems:
        return "its root is not vmtest's image (use_default_filesystems=False)"
    why = unsaved_devices(config)
    if why is not None:
        return why
    if virt.bios is not None:
        return "it boots alternate firmware (bios): a restore would skip it"
    if config.boot_loader_timeout:
        return "it shows GRUB's menu (boot_loader_timeout): a restore would skip the menu"
    if not virt.direct_boot and not virt.install_boot_loader:
        return "its bootable disk has no boot loader (install_boot_loader=False): it boots nothing by itself"
    return existing_state(root_disk(name, config, paths), efi_vars, paths if virt.tpm.enable else None)


def unsaved_devices(config: MachineConfig) -> str | None:
    """A device whose state a snapshot would not hold (None: none)."""
    virt = config.virtualisation
    if virt.qemu.drives:
        return "it has qemu.drives (their content is not part of a snapshot)"
    return None


def existing_state(disk: Path | None, efi_vars: Path | None, tpm_paths: MachinePaths | None = None) -> str | None:
    """State that outlives a launch and that this start must boot with (None: none); ``tpm_paths``: the
    machine's paths, when it has a TPM."""
    if disk is not None and disk.exists():
        return "its root disk already exists (kept state, or a restart): it boots from that"
    if efi_vars is not None and efi_vars.exists():
        return "its UEFI variable store already exists (kept, or $VMTEST_EFI_VARS): it boots with that"
    if tpm_paths is not None and tpm.has_state(tpm_paths):
        return "its TPM's state already exists (kept state, or a restart): it boots with that"
    return None


def save(
    channels: Channels,
    paths: MachinePaths,
    disk: Path | None,
    reservation: Reservation,
    logger: logging.Logger,
    name: str,
    efi_vars: Path | None = None,
) -> dict[str, Any]:
    """Save the running, prepared machine into ``reservation``'s directory (the machine stays paused).

    The guest must already have synced and unmounted its 9p shares (QEMU refuses to migrate a mounted
    9p export). Pause; copy the root overlay and a UEFI machine's variable store (``efi_vars``: the
    disk and flash state that belongs to the saved memory); migrate to a file; keep the boot's console log.
    """
    start = time.monotonic()
    tmp = reservation.tmp
    monitor = channels.monitor
    monitor.command("stop")  # stops the CPUs and flushes the disks
    if disk is not None:
        shutil.copyfile(disk, tmp / DISK)
    if efi_vars is not None:
        shutil.copyfile(efi_vars, tmp / EFI_VARS)
    monitor.command("migrate", uri=f"exec:cat > {tmp / STATE}")
    deadline = time.monotonic() + SAVE_TIMEOUT
    while True:
        info = monitor.command("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            break
        if status in ("failed", "cancelled") or time.monotonic() > deadline:
            why = info.get("error-desc", status) if isinstance(info, dict) else status
            raise MachineError(
                name, "saving a snapshot", f"QEMU's migration to a file ended: {why}", time.monotonic() - start
            )
        time.sleep(0.05)
    if paths.console_log.exists():
        shutil.copyfile(paths.console_log, tmp / CONSOLE)
    size = (tmp / STATE).stat().st_size
    log(logger, f"{name}: snapshot saved in {time.monotonic() - start:.1f}s ({size >> 20} MiB of state)")
    return {"state_bytes": size, "has_disk": disk is not None, "format": FORMAT}


def lookup(cache: Cache, key: str, qemu: str) -> Snapshot | None:
    """The complete snapshot for ``key`` made by this QEMU, or None."""
    path = cache.lookup(KIND, key)
    if path is None:
        return None
    snap = Snapshot(key, path)
    if snap.meta().get("qemu") != qemu or not snap.state.is_file():
        return None
    return snap


def import_policy(cache: Cache, qemu: str, logger: logging.Logger) -> tuple[Accept, Fixup]:
    """What an entry from elsewhere (``vmtest cache import``, the remote cache) must be to be installed:
    any image or kernel; a snapshot only when it was made by this host's QEMU version (a migration stream
    is not portable across versions) and its image is here. A kept snapshot's disk is re-pointed at this
    cache's copy of its image (qcow2 names its backing file by path)."""

    def accept(kind: str, key: str, meta: dict[str, Any]) -> str | None:
        if kind != KIND:
            return None
        if meta.get("foreign_image"):
            return "a snapshot of a foreign image stays on the host that made it"
        if meta.get("qemu") != qemu:
            return f"made by {meta.get('qemu', 'an unknown QEMU')}, this host has {qemu}"
        if cache.lookup("images", str(meta.get("image_key"))) is None:
            return f"its image {meta.get('image_key')} is not in this cache"
        return None

    def fixup(kind: str, tmp: Path, meta: dict[str, Any]) -> None:
        disk = tmp / DISK
        if kind != KIND or not disk.is_file():
            return
        image = cache.path("images", str(meta["image_key"])) / "root.qcow2"
        run(
            ["qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", image, disk],
            what="re-pointing a snapshot's disk at this cache's image",
            logger=logger,
        )

    return accept, fixup


def remove(cache: Cache, key: str, logger: logging.Logger) -> None:
    cache.remove(KIND, key, logger)
