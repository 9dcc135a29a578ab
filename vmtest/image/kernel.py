"""The guest kernel: Debian's linux-image-amd64, plus a busybox stage-1 initrd.

The kernel package is resolved through the host's apt (its version is part
of every image key), downloaded once into the cache's deb directory and
unpacked into a ``kernels/<key>`` cache entry holding ``vmlinuz``,
``initrd`` (busybox, the stage-1 module groups of
:data:`vmtest.core.contract.STAGE1_MODULE_GROUPS` with their dependencies, and
the ``init`` script next to this file) and ``modules.qcow2``: the pruned module
tree as a read-only ext4 disk (compressed qcow2) that every machine of this
kernel gets and stage 1 mounts on ``/lib/modules/<release>``, so that images
do not each hold a copy (the tree is 326 MiB, its disk 89 MB; the default
image was 544 MB with its copy, 63 MB without it and compressed). One
initrd serves every configuration: the ``vmtest.modules=`` kernel parameter
picks the groups a boot loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vmtest.core.cache import Cache, disk_usage
from vmtest.core.contract import MODULES_LABEL, STAGE1_MODULE_GROUPS
from vmtest.core.errors import ImageBuildError
from vmtest.core.log import nested
from vmtest.core.proc import ProcessError, run
from vmtest.image import packages
from vmtest.image.qcow2 import convert_compressed, mkfs_ext4

KERNEL_BUILDER_VERSION = "6"
META_PACKAGE = "linux-image-amd64"

# Parts of the module tree that drive only real hardware no QEMU machine has (GPUs, vendor NICs,
# industrial I/O...). Everything a VM can use stays, virtual devices included: sound (intel-hda,
# ac97 and snd-dummy give tests /dev/snd/*), media (vivid), wireless (mac80211_hwsim), bluetooth
# (hci_vhci), infiniband (soft RoCE, siw), hwmon. Trimming must never remove a device a test expects.
PRUNED_MODULE_DIRS = (
    "kernel/drivers/gpu/drm/amd",
    "kernel/drivers/gpu/drm/i915",
    "kernel/drivers/gpu/drm/nouveau",
    "kernel/drivers/gpu/drm/radeon",
    "kernel/drivers/staging",
    "kernel/drivers/iio",
    "kernel/drivers/comedi",
    "kernel/drivers/isdn",
    "kernel/drivers/net/ethernet/mellanox",
    "kernel/drivers/net/ethernet/chelsio",
    "kernel/drivers/net/ethernet/broadcom",
    "kernel/drivers/net/ethernet/qlogic",
    "kernel/drivers/net/ethernet/marvell",
    "kernel/drivers/net/ethernet/sfc",
    "kernel/drivers/input/touchscreen",
)


@dataclass(frozen=True)
class KernelSpec:
    package: str  # e.g. linux-image-6.1.0-56-amd64
    version: str  # Debian version, e.g. 6.1.192-2

    @property
    def key(self) -> str:
        groups = json.dumps(STAGE1_MODULE_GROUPS, sort_keys=True)  # what the initrd holds and in which order
        digest = hashlib.sha256(
            (self.package + self.version + KERNEL_BUILDER_VERSION + _guest_file("init").decode() + groups).encode()
        ).hexdigest()
        return f"{self.package}_{self.version}_{digest[:12]}".replace(":", "_")


@dataclass(frozen=True)
class Kernel:
    spec: KernelSpec
    release: str  # uname -r
    vmlinuz: Path  # what QEMU's -kernel gets: the PVH-bootable ELF vmlinux if the kernel has one
    initrd: Path
    modules: Path  # the lib/modules/<release> tree as a read-only ext4 disk (qcow2), label MODULES_LABEL


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage (xz- or gzip-compressed payload), or None.

    QEMU boots an ELF vmlinux with a PVH note directly (no firmware, no
    decompression in the guest): under TCG that saves ~2.5 s per boot.
    """
    import lzma
    import zlib

    for magic, make in (
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor()),
        (b"\x1f\x8b\x08\x00", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    ):
        start = bzimage.find(magic)
        while start != -1:
            try:
                out = make().decompress(bzimage[start:])
            except (lzma.LZMAError, zlib.error):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            start = bzimage.find(magic, start + 1)
    return None


def _guest_file(name: str) -> bytes:
    return resources.files("vmtest.image").joinpath("guest", name).read_bytes()


def resolve(logger: logging.Logger, saved: Path | None = None) -> KernelSpec:
    """The kernel package the ``linux-image-amd64`` meta package points at, per host apt. ``saved``: a file
    keeping the answer while apt's lists and pinning stay the same (``apt-cache show`` takes 0.6-0.7 s of
    CPU, paid by every process that starts a machine; reading the file well under 1 ms)."""
    signature = packages.policy_signature()
    if saved is not None:
        try:
            kept = json.loads(saved.read_text())
            if kept["signature"] == signature:
                return KernelSpec(kept["package"], kept["version"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent, torn or from another version: ask apt
    try:
        out = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", META_PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ImageBuildError("resolving the kernel", "apt-cache not found: vmtest needs a Debian host") from exc
    match = re.search(r"^Depends:.*?(linux-image-[^\s,]+)\s*\(=\s*([^)\s]+)\)", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise ImageBuildError(
            "resolving the kernel",
            f"apt knows no {META_PACKAGE} package ({out.stderr.strip() or 'no candidate'}); run 'apt-get update' first",
        )
    spec = KernelSpec(match.group(1), match.group(2))
    if saved is not None:
        record = {"signature": signature, "package": spec.package, "version": spec.version}
        packages.keep_answer(saved, json.dumps(record) + "\n")
    return spec


def download_deb(cache: Cache, package: str, version: str, logger: logging.Logger) -> Path:
    """The .deb of ``package=version`` from the cache's deb directory, downloading it if needed."""
    arch = "amd64"
    name = f"{package}_{version.split(':')[-1]}_{arch}.deb"
    path = cache.debs / name
    if path.is_file():
        return path
    tmp = Path(cache.debs) / f".download-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        with nested(logger, f"downloading {package} {version}"):
            run(
                ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
                what=f"downloading {package}",
                logger=logger,
                cwd=tmp,
                timeout=600,
            )
        got = list(tmp.glob("*.deb"))
        if len(got) != 1:
            raise ImageBuildError(f"downloading {package}", f"expected one .deb, found {got}")
        os.rename(got[0], path)
    except ProcessError as exc:
        raise ImageBuildError(f"downloading {package}", str(exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _module_closure(root: Path, release: str, modules: tuple[str, ...], logger: logging.Logger) -> list[str]:
    """Paths (relative to ``root``) of ``modules`` and their dependencies, in load order."""
    ordered: list[str] = []
    for mod in modules:
        out = run(
            ["modprobe", "-d", root, "-S", release, "--show-depends", mod],
            what=f"resolving module {mod}",
            logger=logger,
        ).output
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                rel = os.path.relpath(parts[1], root)
                if rel not in ordered:
                    ordered.append(rel)
    return ordered


def _module_groups(root: Path, release: str, logger: logging.Logger) -> dict[str, list[str]]:
    """group -> the module paths its ``modules/<group>.list`` names (a group's closure, in load order)."""
    return {group: _module_closure(root, release, modules, logger) for group, modules in STAGE1_MODULE_GROUPS.items()}


def _cpio(src: Path, dest: Path, logger: logging.Logger) -> None:
    """``src`` as an uncompressed newc cpio archive: under TCG the kernel unpacks it ~0.3 s faster than a
    gzipped one (inflating ~8 MiB in emulated code), and QEMU loads the few extra MiB in no time."""
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    proc = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        input="\n".join(["."] + files).encode() + b"\n",
        cwd=src,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError("packing the initrd", proc.stderr.decode(errors="replace"))
    dest.write_bytes(proc.stdout)


def build(cache: Cache, spec: KernelSpec, logger: logging.Logger) -> Kernel:
    """The kernel cache entry for ``spec``, built if missing."""

    def builder(tmp: Path) -> dict[str, object]:
        deb = download_deb(cache, spec.package, spec.version, logger)
        with nested(logger, f"unpacking {deb.name}"):
            unpacked = tmp / "unpacked"
            run(["dpkg-deb", "-x", deb, unpacked], what="unpacking the kernel", logger=logger)
            releases = [p.name for p in (unpacked / "lib/modules").iterdir()]
            if len(releases) != 1:
                raise ImageBuildError("unpacking the kernel", f"expected one module tree, got {releases}")
            release = releases[0]
            tree = unpacked / "lib/modules" / release
            for rel in PRUNED_MODULE_DIRS:
                shutil.rmtree(tree / rel, ignore_errors=True)
            run(["depmod", "-b", unpacked, release], what="depmod", logger=logger)
        with nested(logger, "building the stage-1 initrd"):
            initrd_root = tmp / "initrd-root"
            (initrd_root / "bin").mkdir(parents=True)
            busybox = shutil.which("busybox") or "/bin/busybox"
            if not is_static(busybox):
                raise ImageBuildError(
                    "building the initrd", "a static busybox is needed: apt-get install busybox-static"
                )
            shutil.copy2(busybox, initrd_root / "bin/busybox")
            init = initrd_root / "init"
            init.write_bytes(_guest_file("init"))
            init.chmod(0o755)
            groups = _module_groups(unpacked, release, logger)
            (initrd_root / "modules").mkdir()
            for group, mods in groups.items():
                for rel in mods:
                    dest = initrd_root / rel
                    if not dest.exists():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(unpacked / rel, dest)
                (initrd_root / "modules" / f"{group}.list").write_text("".join(f"/{rel}\n" for rel in mods))
            (initrd_root / "modules" / "all").write_text(",".join(groups) + "\n")
            (initrd_root / "modules" / "release").write_text(release + "\n")  # where the module disk goes
            _cpio(initrd_root, tmp / "initrd", logger)
            shutil.rmtree(initrd_root)
        bzimage = unpacked / "boot" / f"vmlinuz-{release}"
        config_text = (unpacked / "boot" / f"config-{release}").read_text(errors="replace")
        elf = extract_vmlinux(bzimage.read_bytes()) if "CONFIG_PVH=y" in config_text else None
        if elf is not None:
            (tmp / "vmlinux").write_bytes(elf)
        os.rename(bzimage, tmp / "vmlinuz")
        module_disk(tree, tmp / MODULES_DISK, tmp / "modules.ext4", logger)
        shutil.rmtree(unpacked)
        return {
            "package": spec.package,
            "version": spec.version,
            "release": release,
            "boot_kernel": "vmlinux" if elf is not None else "vmlinuz",
        }

    with nested(logger, f"kernel {spec.package} {spec.version}", level=logging.DEBUG):
        path = cache.build("kernels", spec.key, builder, logger)
    meta = json.loads((path / "meta.json").read_text())
    return Kernel(spec, meta["release"], path / meta["boot_kernel"], path / "initrd", path / MODULES_DISK)


MODULES_DISK = "modules.qcow2"


def module_disk(tree: Path, out: Path, scratch: Path, logger: logging.Logger) -> None:
    """The module ``tree`` as the read-only disk ``out``: ext4 without a journal (never written), labelled
    for stage 1, in a compressed qcow2 (QEMU inflates on the host, outside the emulated CPU)."""
    mib = disk_usage(tree) * 23 // 20 // (1 << 20) + 32
    with nested(logger, f"building the module disk ({mib} MiB file system)"):
        run(
            mkfs_ext4(tree, scratch, MODULES_LABEL, mib, journal=False),
            what="mkfs.ext4 (module disk)",
            logger=logger,
        )
        run(convert_compressed(scratch, out), what="qemu-img", logger=logger)
        scratch.unlink()


def extract_modules(disk: Path, dest: Path, scratch: Path, logger: logging.Logger) -> None:
    """Copy the module disk's files into the directory ``dest`` (made if missing), without mounting it:
    for an image whose packages put files of their own under ``/lib/modules/<release>``."""
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, scratch], what="qemu-img", logger=logger)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        run(["debugfs", "-R", f"rdump / {dest}", scratch], what="debugfs (module disk)", logger=logger)
    finally:
        scratch.unlink()


def is_static(path: str) -> bool:
    """True if ``path`` exists and is a statically linked executable."""
    if not os.path.isfile(path):
        return False
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    return "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout
