"""The image store: ``MachineConfig`` -> cached kernel, initrd and qcow2 base.

The key of an image hashes every input: the config's image inputs, the
kernel entry's key, the base package set, the vmtest guest files and the
builder version. Same inputs, same entry; one changed package or file, a new
entry (the others stay cached).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.config.settings import Settings
from vmtest.core import progress
from vmtest.core.archive import Accept, Fixup
from vmtest.core.cache import Cache
from vmtest.core.contract import GUEST_FILES, xchg_mount_unit
from vmtest.core.log import get_logger, nested
from vmtest.image import bootdisk, remote, space
from vmtest.image import kernel as kernel_mod
from vmtest.image import layer as layer_mod
from vmtest.image import packages as packages_mod
from vmtest.image import rootfs as rootfs_mod
from vmtest.image.rootfs import AFTER_BACKDOOR_UNITS, MASKED_UNITS, after_backdoor_drop_in, build_rootfs, guest_file

IMAGE_BUILDER_VERSION = "4"
ORIGINS = ("cache", "fetched", "built")


def image_key(config: MachineConfig, kernel: kernel_mod.KernelSpec) -> str:
    """The cache key of ``config``'s image on ``kernel`` (pure: nothing is built; the kernel is only
    resolved). ``vmtest cache key`` hashes these, so it changes exactly when an image would be rebuilt."""
    inputs = {
        "builder": IMAGE_BUILDER_VERSION,
        "builder_source": rootfs_mod.SOURCE_DIGEST,
        "config": config.image_inputs(),
        "kernel": kernel.key,
        "layer": layer_mod.layer_key(
            config.suite, layer_mod.packages(config)
        ),  # the bootstrap it starts from (its builder's code too)
        "masked": list(MASKED_UNITS),
        "after_backdoor": {unit: after_backdoor_drop_in(unit) for unit in AFTER_BACKDOOR_UNITS},
        "guest_files": {f.path: hashlib.sha256(guest_file(f.name)).hexdigest() for f in GUEST_FILES},
        "xchg_mount": xchg_mount_unit(),
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@dataclass(frozen=True)
class BootImage:
    """Everything needed to boot a configured machine (all files read-only)."""

    key: str
    disk: Path  # qcow2 base; VMs use an overlay on top of it
    kernel: Path
    initrd: Path
    kernel_release: str
    disk_mib: int
    refs: Path | None = None  # where disks made on this image record it (the cache's refs/), None: nowhere
    modules: Path | None = None  # the kernel's module disk (read-only), mounted by stage 1
    build_id: str = ""  # which build of the key this is (images built before build ids: "")


class ImageStore:
    """Builds and caches guest images."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        logger: logging.Logger | None = None,
        rebuild: bool = False,
        cache_url: str | None = None,
    ) -> None:
        # What is not given here is the run setting in force (--vm-cache-dir / --vm-cache-url in a pytest
        # session, else VMTEST_CACHE_DIR / VMTEST_CACHE_URL, else the XDG cache and none), resolved once:
        # outside pytest that reads every VMTEST_* variable.
        if not cache_dir or not cache_url:
            run = Settings.active()
            cache_dir = cache_dir or run.cache_dir
            cache_url = cache_url or run.cache_url
        self.cache = Cache(Settings.check("cache_dir", cache_dir))
        self.logger = logger or get_logger("image")
        self.rebuild = rebuild  # rebuild every image once in this process (pytest --vm-rebuild)
        # a read-only remote cache asked before building
        self.cache_url: str | None = Settings.check("cache_url", cache_url) if cache_url else None
        self._rebuilt: set[str] = set()
        # image key -> how this store got it: "cache", "fetched" (remote cache) or "built" (summary())
        self.origins: dict[str, str] = {}
        self._kernel: kernel_mod.Kernel | None = None
        self._kernel_lock = threading.Lock()

    def kernel(self) -> kernel_mod.Kernel:
        """The guest kernel, resolved through apt and built once per store (not once per machine)."""
        with self._kernel_lock:
            if self._kernel is None or not self._kernel.initrd.exists():
                spec = kernel_mod.resolve(self.logger, self.cache.apt_answer("kernel"))
                self.fetch("kernels", spec.key)
                self._kernel = kernel_mod.build(self.cache, spec, self.logger)
            return self._kernel

    def key(self, config: MachineConfig, kernel: kernel_mod.Kernel) -> str:
        return image_key(config, kernel.spec)

    def fetch(
        self,
        kind: str,
        key: str,
        accept: Accept | None = None,
        fixup: Fixup | None = None,
        otherwise: str = "building it locally",
    ) -> bool:
        """With a remote cache: install entry ``kind/key`` from it if it is missing here (True: it is here);
        ``accept``, ``fixup`` and ``otherwise`` as for :func:`vmtest.image.remote.fetch`."""
        if self.cache_url is None or self.cache.lookup(kind, key) is not None:
            return False
        return remote.fetch(self.cache, self.cache_url, kind, key, self.logger, accept, fixup, otherwise)

    def rebuild_once(self, kind: str, key: str) -> bool:
        """With ``rebuild`` (--vm-rebuild): True the first time this session asks about ``kind``/``key``."""
        marker = f"{kind}/{key}"
        if not self.rebuild or marker in self._rebuilt:
            return False
        self._rebuilt.add(marker)
        return True

    def get(self, config: MachineConfig, rebuild: bool = False) -> BootImage:
        """The boot image for ``config``, built (with progress logged) if not cached: for a machine that boots
        through GRUB (``use_boot_loader``), its image's bootable disk (:mod:`vmtest.image.bootdisk`)."""
        image = self._image(config, rebuild)
        spec = bootdisk.spec_for(config.virtualisation)
        if spec is None:
            return image
        with progress.activity(f"image {config.suite}: bootable disk", f"bootable disk of image {image.key[:12]}"):
            return self.build_bootdisk(image, spec)

    def build_bootdisk(self, image: BootImage, spec: bootdisk.BootDiskSpec, cache: Cache | None = None) -> BootImage:
        """``image`` as the bootable disk of ``spec`` (built into ``cache``, default this store's, if not there)."""
        key, disk, mib = bootdisk.build(
            cache or self.cache,
            image.key,
            image.disk,
            image.disk_mib,
            image.kernel.with_name("vmlinuz"),
            image.initrd,
            image.kernel_release,
            spec,
            self.logger,
        )
        # (a snapshot of a boot-loader machine is an overlay on this very disk: another build of its key is
        # another disk, its file systems' and partitions' ids drawn anew)
        build = bootdisk.disk_build_id(image.build_id, disk)
        return dataclasses.replace(image, key=key, disk=disk, disk_mib=mib, build_id=build)

    def _image(self, config: MachineConfig, rebuild: bool = False) -> BootImage:
        kernel = self.kernel()
        key = self.key(config, kernel)
        if rebuild or self.rebuild_once("images", key):
            self.cache.remove_image(key, self.logger)  # with its snapshots: they are overlays on this build
            # and its base layer, once: a rebuilt image gets the archive's current base packages too
            layer_key = layer_mod.layer_key(config.suite, layer_mod.packages(config))
            if rebuild or self.rebuild_once("layers", layer_key):
                self.cache.remove("layers", layer_key, self.logger)
        cached = self.cache.lookup("images", key)
        if not cached and not rebuild and not self.rebuild and self.fetch("images", key):
            cached = self.cache.lookup("images", key)
            self.origins[key] = "fetched"
        if cached:
            self.logger.debug("image %s: cache hit", key)
            self.origins.setdefault(key, "cache")
            return self._boot_image(key, cached, kernel)
        packages_mod.check(
            config.packages, config.suite, self.logger, self.cache.apt_answer("names")
        )  # a typo fails now, not after mmdebstrap
        space.check(self.cache.root)  # a full disk too
        label = ", ".join(config.packages) or "base system"

        def builder(tmp: Path) -> dict[str, object]:
            self.origins[key] = "built"
            try:
                result = build_rootfs(self.cache, config, kernel, tmp / "work", tmp / "root.qcow2", self.logger)
            except OSError as exc:  # vmtest's own writes (staging files, moving .debs) hit a full disk
                if exc.errno != errno.ENOSPC:
                    raise
                raise space.explain(space.ENOSPC_TEXT, tmp, "building the image") or exc from None
            shutil.rmtree(tmp / "work", ignore_errors=True)
            return {
                "kernel_key": kernel.spec.key,
                "kernel_release": kernel.release,
                "disk_mib": result.disk_mib,
                "content_mib": result.content_mib,
                "suite": config.suite,
                "packages": list(config.packages),
                "inputs": config.image_inputs(),
                # this build's identity: what is made of the image (snapshots, bootable disks) names it, so a rebuild
                # under the same key (another file system) is never read through their disks
                "build_id": secrets.token_hex(8),
            }

        with (
            nested(self.logger, f"building image {key[:12]} ({config.suite}: {label})"),
            progress.activity(f"image {config.suite}: {label}", f"building image {key[:12]}"),
        ):
            path = self.cache.build("images", key, builder, self.logger)
        self.origins.setdefault(key, "cache")  # another process built it while we waited
        return self._boot_image(key, path, kernel)

    def summary(self) -> str:
        """How the images of this store's session were got: ``images: 2 from the cache, 0 fetched, 1 built
        (built: 3f2a...)``."""
        counts = {origin: sorted(k for k, o in self.origins.items() if o == origin) for origin in ORIGINS}
        text = (
            f"images: {len(counts['cache'])} from the cache, {len(counts['fetched'])} fetched from the remote "
            f"cache, {len(counts['built'])} built"
        )
        if counts["built"]:
            text += " (built: " + ", ".join(k[:12] for k in counts["built"]) + ")"
        return text

    def _boot_image(self, key: str, path: Path, kernel: kernel_mod.Kernel) -> BootImage:
        meta = json.loads((path / "meta.json").read_text())
        return BootImage(
            key,
            path / "root.qcow2",
            kernel.vmlinuz,
            kernel.initrd,
            kernel.release,
            meta["disk_mib"],
            self.cache.refs,
            kernel.modules,
            bootdisk.build_of(meta, stamp=False),
        )
