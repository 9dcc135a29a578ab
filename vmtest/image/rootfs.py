"""Build a guest root file system: base layer + packages -> ext4 -> qcow2.

mmdebstrap runs in ``unshare`` mode (its mounts live in a private namespace,
so a killed build leaves none behind) and writes a directory. It starts from
the suite's base layer (:mod:`vmtest.image.layer`: the bootstrap every image
shares, built once) and installs only the configuration's packages on it
(the ``custom`` variant); hooks reuse the cache's .deb files, copy in the
vmtest guest files and the config's files and units, enable services and
run build commands. The kernel's modules are not copied:
``/lib/modules/<release>`` stays empty for the kernel's module disk (see
:mod:`vmtest.image.kernel`). ``mkfs.ext4 -d`` turns the directory into a
file system image, which ``qemu-img`` converts to the qcow2 base every VM
overlays.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from vmtest.config.machine import MachineConfig
from vmtest.core.cache import Cache, disk_usage
from vmtest.core.contract import GUEST_FILES, ROOT_LABEL, XCHG_MOUNT_UNIT, xchg_mount_unit
from vmtest.core.errors import ImageBuildError
from vmtest.core.log import log, nested
from vmtest.core.proc import ProcessError, run
from vmtest.image import layer, scratch, space
from vmtest.image.kernel import Kernel, extract_modules
from vmtest.image.qcow2 import convert_compressed, mkfs_ext4

# Units that only slow a test VM down or write on a timer.
# where a unit listed in `services` may live in the image
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
MASKED_UNITS = (
    "serial-getty@hvc0.service",  # hvc0 is vmtest-attach.service's
    "serial-getty@ttyS0.service",  # the serial console belongs to the driver
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "systemd-timesyncd.service",
    # Each of these pulls in modprobe@ units (an exec of modprobe each, during the early boot that
    # the backdoor waits for) for nothing a test guest has:
    "systemd-repart.service",  # no repart.d definitions in any image (pulled modprobe@loop, @dm_mod)
    "systemd-pstore.service",  # no pstore back-end on QEMU's pc machine (pulled modprobe@efi_pstore)
    "sys-fs-fuse-connections.mount",  # fusectl only aborts FUSE connections; /dev/fuse loads fuse itself
)

# Early units a test's first command does not need, started only once the backdoor has started (a drop-in
# `After=vmtest-backdoor.service` each): the API file systems other than /dev, /proc, /sys and /run
# (hugetlbfs, mqueue, debugfs, tracefs, configfs with its modprobe@configfs) were dispatched before the
# set-up and competed with it and the backdoor for the one vCPU (under TCG each is a fork of PID 1 and an
# exec of mount or modprobe, ~0.1 s); so were the early services below, which finished after the backdoor
# had started anyway: udev's coldplug (stage 1 has loaded the drivers the set-up and the backdoor need),
# /etc/modules-load.d, the remount of root and API file systems by fstab (vmtest's fstab lists none), and
# the list of static device nodes (the nodes themselves are made later, by systemd-tmpfiles-setup-dev).
# All of them are done by the time sysinit.target is reached, as before. (The exchange directory's mount
# is ordered so in its own unit: contract.xchg_mount_unit.)
AFTER_BACKDOOR_UNITS = (
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "modprobe@configfs.service",
    "systemd-udev-trigger.service",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
    "kmod-static-nodes.service",
)
# Ordered after the backdoor's start, they still ran while it started up and greeted the host (its bash
# start-up, ~0.4 s under TCG, shared the one vCPU with four mount execs, kmod and modprobe: about half of
# that window's CPU time in a sched_switch trace); at the lowest priority they run in what the backdoor
# and the test's first commands leave (a nice 19 process gets ~1.5% of the CPU beside one at nice 0; they
# still finish before sysinit.target, as before). Interleaved cold boots, 7 Dec 2026: launch to the first
# command 0.20 s sooner (median of 11 pairs, sooner in all 11), is-system-running within the noise.
AFTER_BACKDOOR_NICE = 19


def after_backdoor_drop_in(unit: str) -> str:
    """The drop-in of one of :data:`AFTER_BACKDOOR_UNITS`: ordered after the backdoor, at the lowest priority."""
    section = "Mount" if unit.endswith(".mount") else "Service"
    return (
        "[Unit]\n# vmtest: not needed before the first test command\nAfter=vmtest-backdoor.service\n"
        f"[{section}]\nNice={AFTER_BACKDOOR_NICE}\n"
    )


# Generators systemd runs (each an exec, 0.1-0.3 s under TCG) before it starts any unit, for
# configurations a test guest does not have: dm-crypt/dm-integrity/dm-verity tables and kernel
# parameters, GPT partition discovery (the root disk has no partition table), resuming from
# hibernation, offline system updates, gettys on the kernel consoles (ttyS0 and hvc0 belong to
# the driver; tty1-6 get theirs from getty.target as before) and the systemd.run= kernel parameter
# (a test has the backdoor, `services` and `units`). Kept: fstab, rc.local, SysV scripts and
# systemd.mask=/wants= on the kernel command line (debug); stage 1 skips each of these four for a
# boot in which it would generate nothing (vmtest/image/guest/init). Masked like units: a link to
# /dev/null in /etc/systemd/system-generators; an image that needs one removes the link in a
# build command.
MASKED_GENERATORS = (
    "systemd-cryptsetup-generator",
    "systemd-integritysetup-generator",
    "systemd-veritysetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-system-update-generator",
    "systemd-getty-generator",
    "systemd-run-generator",
)

# Drivers udev would load for devices of QEMU's pc machine that no test uses: the floppy controller
# (probing it takes long under TCG), the PC speaker and the SMBus controller; and the modules udev
# loads for features of the CPU model (`-cpu max` matches their x86cpu aliases): accelerated kernel
# crypto and checksums (the kernel uses its generic code instead: same results), frequency scaling
# and power/thermal drivers a virtual CPU has no use for. Under TCG each load was an exec of kmod
# plus a signature check in emulated code, while a test's first commands ran. Blacklisting stops
# only the automatic loading: `modprobe floppy` still works.
BLACKLISTED_MODULES = (
    "floppy",
    "pcspkr",
    "i2c_piix4",
    # (module_blacklist= on a TCG guest's command line stops these two, but only after modprobe has
    # loaded kvm, irqbypass and ccp for them)
    "kvm_amd",
    "kvm_intel",
    "aesni_intel",
    "ghash_clmulni_intel",
    "crc32_pclmul",
    "crc32c_intel",
    "crct10dif_pclmul",
    "sha1_ssse3",
    "sha256_ssse3",
    "sha512_ssse3",
    "powernow_k8",
    "acpi_cpufreq",
    "amd_freq_sensitivity",
    "amd64_edac",
    "rapl",
    "intel_rapl_common",
    "intel_cstate",
    "intel_uncore",
)

MIN_DISK_MIB = 1024
# this module's own code: any change to how images are made invalidates them (vmtest.image.store.image_key)
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


@dataclass(frozen=True)
class RootfsResult:
    disk: Path
    disk_mib: int
    content_mib: int


def guest_file(name: str) -> bytes:
    return resources.files("vmtest.image").joinpath("guest", name).read_bytes()


def _write(root: Path, path: str, data: bytes, mode: int) -> None:
    dest = root / path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    dest.chmod(mode)


def stage_overlay(config: MachineConfig, overlay: Path) -> None:
    """Write everything vmtest adds to the guest into ``overlay`` (a tree copied over /)."""
    for f in GUEST_FILES:
        _write(overlay, f.path, guest_file(f.name), f.mode)
    _write(overlay, f"/etc/systemd/system/{XCHG_MOUNT_UNIT}", xchg_mount_unit().encode(), 0o644)
    _write(overlay, "/etc/hostname", b"vmtest\n", 0o644)
    _write(overlay, "/etc/fstab", b"# root is mounted by the vmtest stage-1 initrd\n", 0o644)
    _write(overlay, "/etc/hosts", b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n", 0o644)
    # Debian's tmp.conf empties /tmp at boot (D), from systemd-tmpfiles-setup.service: that runs after
    # the backdoor is up, and deleted what a test's first commands had put in /tmp. Stage 1 empties
    # /tmp instead (vmtest/image/guest/init), before systemd starts; systemd only makes sure it exists.
    _write(
        overlay, "/etc/tmpfiles.d/tmp.conf", b"# vmtest: /tmp is emptied by stage 1\nd /tmp 1777 root root -\n", 0o644
    )
    # Stage 1 masks the generators that have nothing to generate for one boot (vmtest/image/guest/init);
    # the masks go at the boot's systemd-tmpfiles-setup.service, so that a later daemon-reload (an fstab
    # entry, a SysV script or an rc.local added by a test) runs every generator as usual.
    _write(
        overlay,
        "/etc/tmpfiles.d/vmtest-generators.conf",
        b"# vmtest: the generators stage 1 skipped for this boot run again at the next daemon-reload\n"
        b"R! /run/systemd/system-generators\n",
        0o644,
    )
    masks = overlay / "etc/systemd/system"
    for unit in MASKED_UNITS:
        (masks / unit).symlink_to("/dev/null")
    for unit in AFTER_BACKDOOR_UNITS:
        _write(
            overlay,
            f"/etc/systemd/system/{unit}.d/vmtest-after-backdoor.conf",
            after_backdoor_drop_in(unit).encode(),
            0o644,
        )
    generators = overlay / "etc/systemd/system-generators"
    generators.mkdir(parents=True)
    for generator in MASKED_GENERATORS:
        (generators / generator).symlink_to("/dev/null")
    blacklist = "".join(f"blacklist {m}\n" for m in BLACKLISTED_MODULES)
    _write(overlay, "/etc/modprobe.d/vmtest.conf", f"# vmtest: devices no test uses\n{blacklist}".encode(), 0o644)
    for name, text in config.units.items():
        _write(overlay, f"/etc/systemd/system/{name}", text.encode(), 0o644)
    for path, file in config.files.items():
        _write(overlay, path, file.data(), file.mode)


def _service_checks(services: Iterable[str]) -> list[str]:
    """Shell lines failing the build, naming the unit, when a unit in ``services`` is not in the image
    (a unit file in one of systemd's directories; a template instance needs its template)."""
    lines = []
    for unit in services:
        file = re.sub(r"@[^.]*\.", "@.", unit)
        found = " || ".join(f'[ -e "$root{d}/{file}" ]' for d in UNIT_DIRS)
        lines.append(
            f"{{ {found}; }} || {{ echo {shlex.quote(f'vmtest-customize: services: the image has no unit {unit}')}; "
            "exit 1; }"
        )
    return lines


def _customize_script(config: MachineConfig, overlay: Path, kernel: Kernel) -> str:
    enable = [
        *(PurePosixPath(f.path).name for f in GUEST_FILES if f.enable),
        XCHG_MOUNT_UNIT,
        *config.units.keys(),
        *config.services,
    ]
    lines = [
        "set -eu",
        'root="$1"',
        f'cp -a {shlex.quote(str(overlay))}/. "$root"/',
        *_service_checks(config.services),
        'echo "vmtest-customize: enabling ' + " ".join(enable) + '"',
        'chroot "$root" systemctl enable ' + " ".join(shlex.quote(u) for u in enable),
    ]
    # A service without an [Install] section ("static") cannot be enabled; listing it in
    # `services` asks for it to run at boot, so hang it off multi-user.target directly.
    for unit in config.services:
        q = shlex.quote(unit)
        lines.append(
            f'if [ "$(chroot "$root" systemctl is-enabled {q} 2>/dev/null)" = static ]; then '
            f'echo "vmtest-customize: {unit} has no [Install] section, adding it to multi-user.target"; '
            f'chroot "$root" systemctl add-wants multi-user.target {q}; fi'
        )
    lines += [
        'chroot "$root" passwd -d root >/dev/null',
    ]
    for i, cmd in enumerate(config.build_commands):
        lines.append(f'echo "vmtest-customize: build command {i + 1}/{len(config.build_commands)}"')
        lines.append(
            f'chroot "$root" /bin/sh -c {shlex.quote(cmd)} '
            f'|| {{ echo "vmtest-customize: build command {i + 1} failed with status $?: " '
            f"{shlex.quote(cmd)}; exit 1; }}"
        )
    return "\n".join(lines) + "\n"


def _explain_mmdebstrap(exc: ProcessError, config: MachineConfig) -> ImageBuildError:
    text = "\n".join(exc.tail)
    missing = re.findall(r"Unable to locate package (\S+)", text)
    missing += re.findall(r"Package '?([^' ]+)'? has no installation candidate", text)
    if missing:
        names = ", ".join(sorted(set(missing)))
        return ImageBuildError(
            "installing packages",
            f"packages={list(config.packages)!r}: apt cannot find {names} in Debian {config.suite} "
            f"(check the spelling with 'apt-cache search {missing[0]}' and that it exists in {config.suite})",
            exc.tail,
        )
    no_unit = re.search(r"vmtest-customize: services: the image has no unit (\S+)", text)
    if no_unit:
        return ImageBuildError(
            "checking services",
            f"services={list(config.services)!r}: the image has no unit {no_unit.group(1)} (install the package "
            "that ships it, define it in units, or check the spelling)",
            exc.tail[-5:],
        )
    failed_cmd = re.search(r"vmtest-customize: build command (\d+) failed", text)
    if failed_cmd:
        return ImageBuildError(
            f"running build_commands[{int(failed_cmd.group(1)) - 1}]",
            "the command failed inside the image",
            exc.tail,
        )
    # the command line (2 KB) is in the debug log; the error quotes the output, once
    return ImageBuildError("running mmdebstrap", str(exc).split(": ", 1)[0], exc.tail)


def image_argv(
    config: MachineConfig, tarball: Path, debs: Path, new_debs: Path, hook: Path, tree: Path, verbose: bool
) -> list[str]:
    """mmdebstrap's command line that makes ``config``'s root ``tree`` from its layer ``tarball`` (pure):
    the layer unpacked, the packages it lacks installed, then the customize ``hook``. They are installed
    the way mmdebstrap installs a bootstrap's packages: apt from the outside, dpkg chrooted, the package
    lists brought up to date first (the layer's copies: only what changed is fetched). Without packages
    to add nothing is fetched."""
    extra = sorted(set(config.image_inputs()["packages"]) - set(layer.packages(config)))
    install = [
        f'--customize-hook=echo "vmtest-customize: installing {len(extra)} package(s) on the base layer: '
        f'{" ".join(extra)}" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get -o Dir::Bin::dpkg=env '
        '-o DPkg::Options::=--unset=TMPDIR -o DPkg::Options::=dpkg -o DPkg::Chroot-Directory="$1" --yes install '
        + " ".join(shlex.quote(p) for p in extra)
    ]
    return [
        "mmdebstrap",
        "--variant=custom",
        *layer.common_options(debs, verbose),
        layer.unpack_hook(tarball),
        *(install if extra else ["--skip=update"]),
        layer.harvest_hook(new_debs),
        f'--customize-hook=sh {shlex.quote(str(hook))} "$1"',
        config.suite,
        str(tree),
    ]


def build_rootfs(
    cache: Cache, config: MachineConfig, kernel: Kernel, work: Path, out: Path, logger: logging.Logger
) -> RootfsResult:
    """Build the qcow2 base image ``out`` for ``config`` using scratch space ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    tarball = layer.ensure(cache, config.suite, layer.packages(config), logger, work / layer.TARBALL)
    overlay = work / "overlay"
    stage_overlay(config, overlay)
    new_debs = work / "new-debs"
    hook = work / "customize.sh"
    hook.write_text(_customize_script(config, overlay, kernel))
    debs = cache.debs
    # in memory when the host has room; named like the build's directory (images-<key>)
    with scratch.tree_dir(work / "root", work.parent.name.split(".")[0]) as tree:
        argv = image_argv(config, tarball, debs, new_debs, hook, tree, logger.isEnabledFor(logging.DEBUG))
        with nested(
            logger, f"mmdebstrap {config.suite} with {len(config.packages)} extra package(s) on its base layer"
        ):
            # mmdebstrap's own scratch (its gpg home) inside the build directory: a killed build leaves
            # nothing in /tmp, and the next build of the key removes the whole directory
            gpg = work / "tmp"
            gpg.mkdir(parents=True, exist_ok=True)
            layer.mmdebstrap(argv, gpg, work, logger, lambda exc: _explain_mmdebstrap(exc, config))
        layer.keep_debs(new_debs, debs)
        place_modules(tree, kernel, work, logger)
        content_mib = disk_usage(tree) // (1 << 20)
        disk_mib = max(MIN_DISK_MIB, int(content_mib * 1.4) + 256)
        raw = work / "root.ext4"
        _step(
            logger,
            work,
            f"mkfs.ext4: {content_mib} MiB of files into a {disk_mib} MiB file system",
            "creating the ext4 file system",
            "mkfs.ext4",
            mkfs_ext4(tree, raw, ROOT_LABEL, disk_mib),
        )
    _step(
        logger,
        work,
        "converting to qcow2",
        "converting to qcow2",
        "qemu-img convert",
        convert_compressed(raw, out),
    )
    raw.unlink()
    log(logger, f"root image: {out.stat().st_size >> 20} MiB qcow2")
    return RootfsResult(out, disk_mib, content_mib)


def place_modules(tree: Path, kernel: Kernel, work: Path, logger: logging.Logger) -> None:
    """The image's ``/lib/modules/<release>``: an empty directory where stage 1 mounts the kernel's module
    disk (shared by every image of the kernel). When the packages put files of their own there (a module
    package built for this very kernel), the kernel's modules are copied in beside them instead and
    ``depmod`` indexes both; stage 1 then leaves the directory as it is."""
    mods = tree / "lib" / "modules" / kernel.release
    if mods.is_dir() and any(mods.iterdir()):
        log(
            logger, f"packages installed files in /lib/modules/{kernel.release}: the kernel's modules go into the image"
        )
        extract_modules(kernel.modules, mods, work / "modules.raw", logger)
        shutil.rmtree(mods / "lost+found", ignore_errors=True)
        run(["depmod", "-b", tree, kernel.release], what="depmod", logger=logger)
        return
    mods.mkdir(parents=True, exist_ok=True)
    # The module disk stays mounted until systemd-shutdown's final unmount: in the ordered shutdown, udevd
    # (whose kmod context holds the disk's index files open) outlives the unmount, which failed with EBUSY and
    # put "[FAILED] Failed unmounting /usr/lib/modules/<release>" on every console.
    unit = mount_unit_name(f"/usr/lib/modules/{kernel.release}")
    drop_in = tree / "etc/systemd/system" / f"{unit}.d" / "vmtest.conf"
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(
        "[Unit]\n# mounted by vmtest's stage 1; unmounted last, by systemd-shutdown\nDefaultDependencies=no\n"
    )


def mount_unit_name(path: str) -> str:
    """systemd's unit name of the mount point ``path`` (``systemd-escape --path --suffix=mount``, pure)."""
    parts = [p for p in path.split("/") if p]
    escaped = ["".join(_escape_char(c, n == 0 and i == 0) for i, c in enumerate(part)) for n, part in enumerate(parts)]
    return "-".join(escaped) + ".mount"


def _escape_char(c: str, first: bool) -> str:
    if c.isascii() and (c.isalnum() or c in ":_" or (c == "." and not first)):
        return c
    return "".join(f"\\x{b:02x}" for b in c.encode())


def _step(logger: logging.Logger, work: Path, title: str, doing: str, what: str, argv: list[str | Path]) -> None:
    """One build step run as a timed log section; a failure is an ImageBuildError saying what it was
    doing (or, when the disk filled up, how much space is needed)."""
    with nested(logger, title):
        try:
            run(argv, what=what, logger=logger, timeout=600)
        except ProcessError as exc:
            raise space.explain(str(exc), work, doing) or ImageBuildError(doing, str(exc)) from None
