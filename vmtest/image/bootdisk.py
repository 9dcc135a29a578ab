"""The bootable disk: an image's root file system in a GPT disk with GRUB for BIOS and UEFI.

Built from a cached image (:class:`~vmtest.image.store.BootImage`) with file-level tools only, no
privileges and no VM (measured: a few seconds, most of it copying the root file system twice):

1. a sparse raw file partitioned by ``sfdisk`` (:func:`~vmtest.image.grubfiles.layout`): GRUB's BIOS boot
   partition, an EFI System Partition (FAT32) and the root partition;
2. the image's ext4 copied into the root partition (``qemu-img convert`` at its offset), then GRUB's
   files written into it with ``debugfs`` (kernel, initrd, ``/boot/grub/grub.cfg``, the i386-pc modules);
3. the FAT made at its offset (``mkfs.vfat --offset``) and filled with ``mtools``: Debian's signed chain
   (shim as ``EFI/BOOT/BOOTX64.EFI``, the signed ``grubx64.efi``, MokManager), the kernel (Debian's signed
   one), the initrd and ``grub/grub.cfg``;
4. GRUB's BIOS core.img (``grub-mkimage``) written into the BIOS boot partition and boot.img into the
   first sector (:func:`~vmtest.image.grubfiles.boot_sector`: what ``grub-bios-setup`` does, which
   cannot work on a plain file);
5. converted to qcow2 and published as ``bootdisks/<key>`` atomically (:meth:`vmtest.core.cache.Cache.build`).

The key hashes the image's key, the :class:`BootDiskSpec`, this module's and grubfiles' source and the
versions of the host packages the files come from. No machine-specific word is on the disk (see
:mod:`vmtest.image.grubfiles`), so every machine of an image shares it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vmtest.config.bootpath import uses_efi
from vmtest.config.virtualisation import Virtualisation
from vmtest.core.cache import Cache
from vmtest.core.errors import ImageBuildError
from vmtest.core.log import log, nested
from vmtest.core.proc import ProcessError, run
from vmtest.image import grubfiles
from vmtest.image.grubfiles import BootFiles, Layout
from vmtest.image.qcow2 import convert_compressed

KIND = "bootdisks"
BUILDER_VERSION = "1"
# the builder's own code (this module and the GRUB files it writes): a change to it makes new disks
SOURCE_DIGESTS = [
    hashlib.sha256(p.read_bytes()).hexdigest() for p in (Path(__file__), Path(__file__).with_name("grubfiles.py"))
]
GRUB_PC_DIR = Path("/usr/lib/grub/i386-pc")
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
MOK_MANAGER = Path("/usr/lib/shim/mmx64.efi.signed")
SIGNED_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
# Debian packages the build reads files from or runs tools of (./run installs them, `vmtest doctor` checks).
HOST_PACKAGES = ("grub-pc-bin", "grub-efi-amd64-signed", "shim-signed", "mtools", "dosfstools", "fdisk", "e2fsprogs")
DISK_NAME = "disk.qcow2"


@dataclass(frozen=True)
class BootDiskSpec:
    """What shapes a bootable disk besides its image.

    ``fat_label``: the FAT partition's label, ``ESP`` (the seed's ESP label: UEFI and plain BIOS boot) or
    ``BOOT`` (``use_bios_boot``: the seed's separate boot partition). ``grub_on_fat``: BIOS GRUB's
    directory and menu are on the FAT (``/grub``, the guest's /boot/grub when it is mounted at /boot)
    instead of the root's ``/boot/grub``. ``install``: the boot loader is installed (``install_boot_loader``;
    without it the disk has its partitions and files but nothing firmware can boot)."""

    fat_label: str = "ESP"
    grub_on_fat: bool = False
    install: bool = True


def spec_for(virt: Virtualisation) -> BootDiskSpec | None:
    """The bootable disk a machine with options ``virt`` boots from, or None (direct boot, or no root disk)."""
    if not virt.boots_from_disk:
        return None
    bios_boot = virt.use_bios_boot and not uses_efi(virt)
    return BootDiskSpec("BOOT" if bios_boot else "ESP", bios_boot, bool(virt.install_boot_loader))


def host_versions() -> dict[str, str]:
    """The installed version of each of :data:`HOST_PACKAGES` ("" when missing)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *HOST_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {p: found.get(p, "") for p in HOST_PACKAGES}


def image_build(image_disk: Path) -> str:
    """Which build of its key the image ``image_disk`` is (:func:`build_of` its meta, the stamp as fallback)."""
    return build_of(json.loads((image_disk.parent / "meta.json").read_text()), stamp=True)


def disk_build_id(image_build_id: str, disk: Path) -> str:
    """Which build of its key the bootable disk ``disk`` is, with which build of its image (``image_build_id``):
    the :attr:`vmtest.image.store.BootImage.build_id` of a boot-loader machine (in its snapshots' keys)."""
    return f"{image_build_id}+disk {image_build(disk)}"


def build_of(meta: dict[str, Any], stamp: bool) -> str:
    """Which build of its key an image is, from its meta (pure): its build id, kept by an import (unlike the
    ``created`` stamp). An image without one (built before build ids, or outside the store): with ``stamp``
    (bootable disks' keys) that ``created`` stamp, else "" (snapshots' keys, unchanged for such images)."""
    if meta.get("build_id"):
        return str(meta["build_id"])
    return str(float(meta.get("created", 0))) if stamp else ""


def bootdisk_key(image_key: str, image_build: str, spec: BootDiskSpec, versions: dict[str, str]) -> str:
    """The cache key of the bootable disk of build ``image_build`` of image ``image_key`` (a rebuilt image,
    same key, gets a new disk: images are not bit-reproducible; see :func:`image_build`)."""
    inputs = {
        "builder": BUILDER_VERSION,
        "source": SOURCE_DIGESTS,
        "image": image_key,
        "image_build": image_build,
        "spec": asdict(spec),
        "host": versions,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def ext4_uuid(superblock: bytes) -> str:
    """The UUID of an ext4 file system from its superblock (the 1 KiB at byte 1024 of the file system)."""
    if superblock[0x38:0x3A] != b"\x53\xef":
        raise ImageBuildError("reading the root file system", "no ext4 superblock at the root partition's start")
    return str(uuid.UUID(bytes=superblock[0x68:0x78]))


def fat_uuid() -> str:
    """The FAT's serial number as GRUB and blkid spell it."""
    return f"{grubfiles.ESP_VOLUME_ID[:4]}-{grubfiles.ESP_VOLUME_ID[4:]}"


def debugfs_commands(files: BootFiles, kernel: Path, initrd: Path, cfg: Path, grub_modules: list[Path]) -> str:
    """``debugfs -f`` input writing the kernel, initrd and menu (and GRUB's modules) into the root's /boot."""
    q = shlex.quote
    lines = [f"mkdir {files.prefix}", f"mkdir {files.grub_dir}"]
    for src, dest in ((kernel, files.kernel), (initrd, files.initrd), (cfg, f"{files.grub_dir}/grub.cfg")):
        lines += [f"rm {dest}", f"write {q(str(src))} {dest}"]
    if grub_modules:
        lines.append(f"mkdir {files.grub_dir}/i386-pc")
        lines += [f"write {q(str(m))} {files.grub_dir}/i386-pc/{m.name}" for m in grub_modules]
    return "\n".join(lines) + "\n"


class Builder:
    """One build, in the cache entry's scratch directory ``tmp``."""

    def __init__(self, tmp: Path, disk: Layout, logger: logging.Logger) -> None:
        self.tmp = tmp
        self.disk = disk
        self.raw = tmp / "disk.raw"
        self.logger = logger

    def step(self, what: str, argv: list[str | Path], env: dict[str, str] | None = None) -> str:
        try:
            return run(argv, what=what, logger=self.logger, timeout=600, env=env).output
        except ProcessError as exc:
            raise ImageBuildError(f"building the bootable disk: {what}", str(exc), exc.tail) from None

    def partition(self) -> None:
        script = self.tmp / "layout.sfdisk"
        script.write_text(grubfiles.sfdisk_script(self.disk))
        with open(self.raw, "wb") as fh:
            fh.truncate(self.disk.total_mib << 20)
        self.step("sfdisk", ["sh", "-c", 'sfdisk -q "$1" < "$2"', "sfdisk", self.raw, script])

    def copy_root(self, image: Path) -> str:
        """The image's ext4 into the root partition; returns its UUID."""
        root = self.disk.root
        target = f"driver=raw,offset={root.offset},size={root.size_mib << 20},file.driver=file,file.filename={self.raw}"
        self.step(
            "copying the root file system",
            ["qemu-img", "convert", "-n", "-f", "qcow2", image, "--target-image-opts", target],
        )
        with open(self.raw, "rb") as fh:
            fh.seek(root.offset + 1024)
            return ext4_uuid(fh.read(1024))

    def fill_root(self, files: BootFiles, kernel: Path, initrd: Path, modules: list[Path]) -> None:
        cfg = self.tmp / "root-grub.cfg"
        cfg.write_text(grubfiles.grub_cfg(files))
        cmds = self.tmp / "root.debugfs"
        cmds.write_text(debugfs_commands(files, kernel, initrd, cfg, modules))
        out = self.step("writing /boot", ["debugfs", "-w", "-f", cmds, f"{self.raw}?offset={self.disk.root.offset}"])
        bad = [line for line in out.splitlines() if "write:" in line or "Could not" in line or "No free" in line]
        if bad:
            raise ImageBuildError("building the bootable disk: writing /boot with debugfs", bad[0], bad[-10:])

    def make_fat(self, label: str) -> None:
        esp = self.disk.esp
        self.step(
            "mkfs.vfat",
            [
                "mkfs.vfat",
                "-F",
                "32",
                "-s",
                "1",
                "-n",
                label,
                "-i",
                grubfiles.ESP_VOLUME_ID,
                "--offset",
                str(esp.start_sector),
                self.raw,
                str(esp.size_mib * 1024),
            ],
        )

    def fill_fat(self, files: BootFiles, kernel: Path, initrd: Path, spec: BootDiskSpec) -> None:
        image = f"{self.raw}@@{self.disk.esp.offset}"
        env = {"MTOOLS_SKIP_CHECK": "1"}
        cfg = self.tmp / "fat-grub.cfg"
        cfg.write_text(grubfiles.grub_cfg(files))
        stub = self.tmp / "efi-stub.cfg"
        stub.write_text(grubfiles.efi_stub_cfg(files.fs_uuid, files.grub_dir))
        self.step("mmd", ["mmd", "-i", image, "::/grub", "::/EFI", "::/EFI/BOOT", "::/EFI/debian"], env)
        copies: list[tuple[Path, str]] = [
            (kernel, files.kernel),
            (initrd, files.initrd),
            (cfg, f"{files.grub_dir}/grub.cfg"),
        ]
        if spec.install:
            copies += [
                (SHIM, "/EFI/BOOT/BOOTX64.EFI"),
                (SIGNED_GRUB, "/EFI/BOOT/grubx64.efi"),
                (MOK_MANAGER, "/EFI/BOOT/mmx64.efi"),
                (stub, "/EFI/debian/grub.cfg"),
            ]
        for src, dest in copies:
            self.step(f"mcopy {dest}", ["mcopy", "-i", image, src, f"::{dest}"], env)
        if spec.install and spec.grub_on_fat:
            self.step("mcopy i386-pc", ["mcopy", "-s", "-i", image, GRUB_PC_DIR, f"::{files.grub_dir}/"], env)

    def install_bios(self, files: BootFiles) -> None:
        core_cfg = self.tmp / "core.cfg"
        core_cfg.write_text(grubfiles.core_cfg(files))
        core = self.tmp / "core.img"
        self.step(
            "grub-mkimage",
            [
                "grub-mkimage",
                "-O",
                "i386-pc",
                "-d",
                GRUB_PC_DIR,
                "-c",
                core_cfg,
                "-p",
                files.grub_dir,
                "-o",
                core,
                *grubfiles.CORE_MODULES,
            ],
        )
        lba = self.disk.bios.start_sector
        with open(self.raw, "r+b") as fh:
            first = fh.read(512)
            fh.seek(0)
            fh.write(grubfiles.boot_sector((GRUB_PC_DIR / "boot.img").read_bytes(), first, lba))
            fh.seek(lba * 512)
            fh.write(grubfiles.core_image(core.read_bytes(), lba))


def build(
    cache: Cache,
    image_key: str,
    image_disk: Path,
    image_mib: int,
    kernel: Path,
    initrd: Path,
    release: str,
    spec: BootDiskSpec,
    logger: logging.Logger,
) -> tuple[str, Path, int]:
    """The bootable disk of an image (``image_disk``, its ext4 ``image_mib`` MiB; ``kernel`` a bzImage),
    from the cache or built: (key, qcow2 path, disk size in MiB)."""
    key = bootdisk_key(image_key, image_build(image_disk), spec, host_versions())
    disk = grubfiles.layout(image_mib)

    def builder(tmp: Path) -> dict[str, object]:
        b = Builder(tmp, disk, logger)
        b.partition()
        root_uuid = b.copy_root(image_disk)
        on_root = BootFiles(release, root_uuid, "/boot")
        on_fat = BootFiles(release, fat_uuid(), "")
        modules = sorted(GRUB_PC_DIR.iterdir()) if spec.install and not spec.grub_on_fat else []
        b.fill_root(on_root, kernel, initrd, [m for m in modules if m.is_file()])
        b.make_fat(spec.fat_label)
        b.fill_fat(on_fat, kernel, initrd, spec)
        if spec.install:
            b.install_bios(on_fat if spec.grub_on_fat else on_root)
        b.step("converting to qcow2", convert_compressed(b.raw, tmp / DISK_NAME))
        os.unlink(b.raw)
        return {"image_key": image_key, "disk_mib": disk.total_mib, "spec": asdict(spec), "root_uuid": root_uuid}

    with nested(logger, f"bootable disk {key[:12]} of image {image_key[:12]}"):
        path = cache.build(KIND, key, builder, logger)
    meta = json.loads((path / "meta.json").read_text())
    log(logger, f"bootable disk {key[:12]}: {meta['disk_mib']} MiB", level=logging.DEBUG)
    return key, path / DISK_NAME, int(meta["disk_mib"])
