"""``vmtest doctor``: is this host ready to run VM tests? What exactly is missing?"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vmtest.config.firmware import OVMF_DIR, OVMF_FILES, OVMF_SECURE_FILES
from vmtest.config.settings import Settings, no_ini
from vmtest.core.cache import Cache
from vmtest.core.errors import ConfigError, VmtestError
from vmtest.image import ImageStore
from vmtest.image.kernel import is_static
from vmtest.vm import accel as accel_mod
from vmtest.vm.bootargv import Boot

# (what, how to look for it, Debian package that provides it)
PROGRAMS = (
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("vde_switch", "vde2"),
    ("mmdebstrap", "mmdebstrap"),
    ("tesseract", "tesseract-ocr"),
    ("setpriv", "util-linux"),  # tesseract-wrapper: tesseract dies with vmtest
    ("mkfs.ext4", "e2fsprogs"),
    ("modprobe", "kmod"),
    ("depmod", "kmod"),
    ("cpio", "cpio"),
    ("nc", "netcat-openbsd"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
    ("swtpm", "swtpm"),  # virtualisation.tpm
    ("swtpm_setup", "swtpm-tools"),  # virtualisation.tpm.provisioning (the usual command)
    # the bootable disk of use_boot_loader (vmtest/image/bootdisk.py)
    ("sfdisk", "fdisk"),
    ("debugfs", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("grub-mkimage", "grub-common"),
)
FILES = (
    ("/bin/busybox", "busybox-static", "a statically linked busybox for the stage-1 initrd"),
    *(
        (os.path.join(OVMF_DIR, name), "ovmf", f"{what} for virtualisation.{option}")
        for (name, what, option) in (
            (OVMF_FILES[0], "UEFI firmware (OVMF)", "use_efi_boot"),
            (OVMF_FILES[1], "its variable store template", "use_efi_boot"),
            (OVMF_SECURE_FILES[0], "OVMF's Secure Boot build", "use_secure_boot"),
            (OVMF_SECURE_FILES[1], "its variables with Microsoft's keys enrolled", "use_secure_boot"),
        )
    ),
    ("/usr/share/qemu/qboot.rom", "qemu-system-data", "qboot, an alternate firmware for virtualisation.bios"),
    ("/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin", "GRUB for BIOS on the bootable disk (use_boot_loader)"),
    (
        "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        "grub-efi-amd64-signed",
        "Debian's signed GRUB on the bootable disk's ESP (use_boot_loader)",
    ),
    ("/usr/lib/shim/shimx64.efi.signed", "shim-signed", "Debian's signed shim on the bootable disk's ESP"),
)
PYTHON_MODULES = (("pexpect", "pexpect"), ("qemu.qmp", "qemu.qmp"), ("PIL", "pillow"), ("pytesseract", "pytesseract"))
# Needed only by one feature (or by vmtest's own test suite): reported with their fix, never a failure.
OPTIONAL_PROGRAMS = (
    ("ffmpeg", "ffmpeg", "encodes the screen videos of --vm-record"),
    ("chromium", "chromium", "vmtest's test suite opens pytest-html reports in it"),
)
OPTIONAL_MODULES = (("pytest_html", "pytest-html", "pytest --html=report.html: screenshots and timelines inline"),)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    package: str | None = None  # Debian package that fixes it
    fix: str | None = None  # any other command that fixes it
    optional: bool = False  # missing, it costs one feature, and the host is still ready


def host_checks() -> list[Check]:
    checks = []
    for program, package in PROGRAMS:
        found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        checks.append(Check(program, bool(found), found or "not found", None if found else package))
    for path, package, why in FILES:
        ok = os.path.isfile(path) and (not path.endswith("busybox") or is_static(path))
        checks.append(Check(path, ok, why if ok else f"missing ({why})", None if ok else package))
    for module, dist in PYTHON_MODULES:
        ok = importlib.util.find_spec(module.split(".")[0]) is not None and (
            "." not in module or importlib.util.find_spec(module) is not None
        )
        checks.append(
            Check(
                f"python: {module}",
                ok,
                "importable" if ok else "not importable",
                fix=None if ok else f"pip install {dist}",
            )
        )
    for program, package, why in OPTIONAL_PROGRAMS:
        found = shutil.which(program)
        checks.append(
            Check(program, bool(found), found or f"not found ({why})", None if found else package, optional=True)
        )
    for module, dist, why in OPTIONAL_MODULES:
        ok = importlib.util.find_spec(module) is not None
        checks.append(
            Check(
                f"python: {module}",
                ok,
                "importable" if ok else f"not importable ({why})",
                fix=None if ok else f"pip install {dist}",
                optional=True,
            )
        )
    apt = (
        subprocess.run(
            ["apt-cache", "show", "--no-all-versions", "linux-image-amd64"], capture_output=True, text=True, check=False
        )
        if shutil.which("apt-cache")
        else None
    )
    ok = apt is not None and apt.returncode == 0 and "Depends:" in apt.stdout
    checks.append(
        Check(
            "apt knows linux-image-amd64",
            ok,
            "the guest kernel package can be resolved" if ok else "apt has no package lists with the guest kernel",
            fix=None if ok else "apt-get update",
        )
    )
    if os.geteuid() != 0:
        checks.append(
            Check(
                "running as root",
                False,
                "mmdebstrap and mkfs.ext4 -d need root to build images",
                fix="run as root (sudo)",
            )
        )
    return checks


def settings_checks(cli: Mapping[str, object], env: Mapping[str, str]) -> tuple[Settings, list[Check]]:
    """The run settings, and a failed check for each environment variable with a bad value (the
    settings are then resolved without it, so the other checks still run)."""
    env = dict(env)
    checks: list[Check] = []
    while True:
        try:
            return Settings.resolve(cli, env, no_ini), checks
        except ConfigError as exc:
            if exc.field not in env:
                raise
            checks.append(Check(f"${exc.field}", False, str(exc), fix=f"unset {exc.field} or correct it"))
            del env[exc.field]


def accel_check(cache: Cache, boot_fn: Callable[[], Boot], logger: logging.Logger, accel: str | None = None) -> Check:
    try:
        chosen = accel_mod.choose(cache, boot_fn, logger, accel)
    except VmtestError as exc:
        env = Settings.declaration("accel").env
        return Check("accelerator", False, str(exc), fix=f"unset {env} or set {env}=tcg")
    verdict = cache.accel_verdict.read_text().strip() if cache.accel_verdict.exists() else ""
    return Check("accelerator", True, f"{chosen} {verdict}")


def report(checks: list[Check]) -> tuple[str, bool]:
    lines = []
    for check in checks:
        mark = "ok     " if check.ok else "absent " if check.optional else "MISSING"
        fix = ""
        if not check.ok:
            fix = f"  -> fix: apt-get install -y {check.package}" if check.package else f"  -> fix: {check.fix}"
        lines.append(f"  [{mark}] {check.name}: {check.detail}{fix}")
    required = [c for c in checks if not c.ok and not c.optional]
    packages = sorted({c.package for c in required if c.package})
    others = [c.fix for c in required if c.fix]
    ok = not required
    if ok:
        lines.append("everything vmtest needs is here")
    else:
        lines.append("to fix everything at once:")
        if packages:
            lines.append("  apt-get install -y " + " ".join(packages))
        lines.extend(f"  {fix}" for fix in dict.fromkeys(others))
    optional = [c for c in checks if not c.ok and c.optional]
    if optional:
        lines.append("optional (absent):")
        optional_packages = sorted({c.package for c in optional if c.package})
        if optional_packages:
            lines.append("  apt-get install -y " + " ".join(optional_packages))
        lines.extend(f"  {c.fix}" for c in optional if c.fix)
    return "\n".join(lines), ok


def default_boot_fn(cache_dir: Path, logger: logging.Logger) -> Callable[[], Boot]:
    def boot() -> Boot:
        kernel = ImageStore(cache_dir, logger).kernel()
        return Boot(kernel.vmlinuz, kernel.initrd)

    return boot


def run_doctor(cli: Mapping[str, object], logger: logging.Logger, check_accel: bool = True) -> tuple[str, bool]:
    """Check the host; ``cli`` holds the settings given on the command line (``cache_dir``)."""
    settings, checks = settings_checks(cli, os.environ)
    root = settings.cache_dir
    checks += host_checks()
    if check_accel:
        if all(c.ok or c.optional for c in checks):
            checks.append(accel_check(Cache(root), default_boot_fn(root, logger), logger, settings.accel))
        else:
            checks.append(
                Check(
                    "accelerator",
                    False,
                    "not checked: fix the missing pieces above first",
                    fix="vmtest doctor (again, after the fixes)",
                )
            )
    return report(checks)
