"""Host-side preparation before QEMU starts: disks, host checks, files for the guest.

``prepare`` creates the root overlay and the empty disks idempotently (kept
across reboots and, with ``--vm-keep-state``, across runs), checks what can
only be checked on this host (QEMU binary, free memory, disk size against the
image) and returns what the guest's set-up script needs to know.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core import keptdisks, meminfo
from vmtest.core.errors import ConfigError, LaunchError
from vmtest.core.proc import ProcessError, run
from vmtest.image import BootImage
from vmtest.vm.paths import MachinePaths, root_disk

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Prepared:
    certs: Path | None  # host CA bundle to copy into the guest


def check_host(config: MachineConfig) -> None:
    """Problems only this host can reveal, as ConfigErrors naming the option."""
    virt = config.virtualisation
    if shutil.which(virt.qemu.binary) is None:
        raise ConfigError(
            "virtualisation.qemu.binary",
            virt.qemu.binary,
            "not found on PATH or not executable",
            "install qemu-system-x86 (./run setup) or give an absolute path",
        )
    free = meminfo.available_mib()
    if free is not None and virt.memory_size > free:
        raise ConfigError(
            "virtualisation.memory_size",
            virt.memory_size,
            f"more than the host's available memory ({free} MiB)",
            f"use at most {free} MiB, or free memory on the host",
        )
    for i, drive in enumerate(virt.qemu.drives):
        if "://" not in drive.file and not os.path.exists(drive.file):
            raise ConfigError(
                f"virtualisation.qemu.drives[{i}].file",
                drive.file,
                "no such file on the host",
                "create the disk image before the machine starts (e.g. qemu-img create -f qcow2 FILE 64M)",
            )
    for tag, share in virt.shared_directories.items():
        if not os.path.isdir(share.source):
            raise ConfigError(
                f"virtualisation.shared_directories[{tag!r}].source",
                share.source,
                "no such directory on the host (any more)",
                "create it before the machine starts",
            )
    if virt.use_host_certs and not HOST_CA_BUNDLE.is_file():
        raise ConfigError(
            "virtualisation.use_host_certs",
            True,
            f"the host has no CA bundle at {HOST_CA_BUNDLE}",
            "install ca-certificates on the host or turn the option off",
        )


def qemu_img(argv: list[str], what: str, name: str, logger: logging.Logger) -> None:
    """Run ``qemu-img argv``; a failure is a LaunchError of machine ``name`` for ``what``."""
    try:
        run(["qemu-img", *argv], what=what, logger=logger)
    except ProcessError as exc:
        raise LaunchError(name, what, str(exc)) from None


def _overlay(backing: Path, size: int, disk: Path, name: str, logger: logging.Logger) -> None:
    """An empty qcow2 overlay of ``size`` MiB on ``backing`` at ``disk``: a copy of a template kept next
    to the backing file (one exec of qemu-img per backing file and size instead of one per start: it
    took 0.1-0.5 s of every restore). Where the template cannot be written (a read-only cache), the
    overlay is made directly."""
    argv = ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing)]
    tag = hashlib.sha256(str(backing).encode()).hexdigest()[:8]  # the template names its backing by path
    template = backing.with_name(f"overlay-{size}M-{tag}.qcow2")
    if not template.is_file():
        tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
        try:
            qemu_img([*argv, str(tmp), f"{size}M"], "creating the root disk overlay", name, logger)
            os.replace(tmp, template)
        except (LaunchError, OSError) as exc:
            logger.debug("%s: no overlay template next to %s (%s)", name, backing, exc)
            tmp.unlink(missing_ok=True)
            qemu_img([*argv, str(disk), f"{size}M"], "creating the root disk overlay", name, logger)
            return
    shutil.copyfile(template, disk)


def empty_disks(name: str, config: MachineConfig, paths: MachinePaths, logger: logging.Logger, fresh: bool) -> None:
    """The empty disks (``empty_disk_images``) that are missing (``fresh``: all of them made new)."""
    for i, size in enumerate(config.virtualisation.empty_disk_images):
        path = paths.empty_disk(i)
        if fresh:
            path.unlink(missing_ok=True)
        if not path.exists():
            qemu_img(["create", "-q", "-f", "qcow2", str(path), f"{size}M"], f"creating empty disk {i}", name, logger)


def grows_root(config: MachineConfig, image: BootImage) -> bool:
    """Whether the root file system must grow to a root disk larger than the image's (pure)."""
    virt = config.virtualisation
    has_disk = virt.use_default_filesystems and virt.disk_image is not None
    return has_disk and virt.root_disk_mib(image.disk_mib) > image.disk_mib


def prepare(
    name: str,
    config: MachineConfig,
    paths: MachinePaths,
    image: BootImage,
    logger: logging.Logger,
    base: Path | None = None,
    fresh: bool = False,
) -> Prepared:
    """Create what is missing: the root overlay (on ``base``, default the image; ``fresh``: a new one even
    if it exists) and the empty disks; check what only this host can tell."""
    virt = config.virtualisation
    check_host(config)
    disk = root_disk(name, config, paths) if virt.use_default_filesystems else None
    if disk is not None:
        size = virt.root_disk_mib(image.disk_mib)
        if size < image.disk_mib:
            raise ConfigError(
                "virtualisation.disk_size",
                virt.disk_size,
                f"smaller than the image's file system ({image.disk_mib} MiB)",
                f"set disk_size to at least {image.disk_mib}",
            )
        if fresh:
            disk.unlink(missing_ok=True)
        if disk.exists():  # kept across reboots or runs: still on the base it was made on?
            keptdisks.check(image.refs, disk, name)
        else:
            disk.parent.mkdir(parents=True, exist_ok=True)
            _overlay(base or image.disk, size, disk, name, logger)
            if image.refs is not None:  # cache gc keeps its base while the disk exists
                keptdisks.record(image.refs, disk)
    empty_disks(name, config, paths, logger, fresh)
    return Prepared(certs=HOST_CA_BUNDLE if virt.use_host_certs else None)
