"""Choosing the accelerator: KVM only if it is proven to boot, else TCG.

``/dev/kvm`` existing is not enough (on nested, paravirtualised hosts it
opens fine and then hangs), so ``auto`` boots a tiny guest (the stage-1
initrd with ``vmtest.probe``) under ``-accel kvm`` with a short timeout and
caches the verdict per host in the cache directory. The run setting ``accel``
(``--vm-accel``, ``VMTEST_ACCEL``: :class:`vmtest.config.settings.Settings`)
forces ``kvm`` or ``tcg``; a forced ``kvm`` that does not work is an error,
never a silent fallback.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

from vmtest.config.settings import Settings
from vmtest.core.cache import Cache
from vmtest.core.contract import DEFAULT_QEMU_BINARY as DEFAULT_QEMU
from vmtest.core.contract import PROBE_OK
from vmtest.core.errors import HostError
from vmtest.core.log import log
from vmtest.core.proc import ProcessError, run
from vmtest.image import BootImage
from vmtest.vm.argv import probe_argv
from vmtest.vm.bootargv import Boot

PROBE_TIMEOUT = 20.0


def requested(accel: str | None = None) -> str:
    """The accelerator asked for: ``accel`` as resolved by the caller (the pytest plugin, the ``vmtest``
    command), checked against :data:`~vmtest.config.settings.ACCELERATORS`; None (a Machine built
    outside the plugin) means the run setting in force (:meth:`~vmtest.config.settings.Settings.active`: the pytest
    session's, else ``VMTEST_ACCEL``, else auto)."""
    if accel is None:
        return Settings.active().accel
    checked: str = Settings.check("accel", accel)  # the accel validator returns one of ACCELERATORS
    return checked


@functools.cache
def host_fingerprint(qemu: str = DEFAULT_QEMU) -> str:
    """Identifies this host + QEMU, so a cached verdict is not reused elsewhere (once per process: it
    runs ``qemu --version``)."""
    try:
        cpu = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), ""
        )
    except OSError:
        cpu = ""
    try:
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        version = "missing"
    blob = "|".join([platform.node(), platform.release(), cpu, version])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def probe_kvm(boot: Boot, logger: logging.Logger, qemu: str = DEFAULT_QEMU) -> tuple[bool, str]:
    """Boot the probe guest under KVM. Returns (works, reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible (add yourself to the kvm group)"
    try:
        done = run(probe_argv("kvm", boot, qemu), what="KVM probe", logger=logger, timeout=PROBE_TIMEOUT, check=False)
    except ProcessError as exc:
        return False, f"a tiny guest under -accel kvm did not finish within {PROBE_TIMEOUT:.0f}s (KVM hangs here)" + (
            f"; last output: {exc.tail[-1]}" if exc.tail else ""
        )
    if PROBE_OK in done.output:
        return True, f"a tiny guest booted under KVM in {done.elapsed:.1f}s"
    last = done.output.strip().splitlines()[-1:] or ["no output"]
    return False, f"QEMU with -accel kvm exited with status {done.status}: {last[0]}"


def choose(
    cache: Cache,
    boot_fn: Callable[[], Boot],
    logger: logging.Logger,
    accel: str | None = None,
    qemu: str = DEFAULT_QEMU,
) -> str:
    """The accelerator to use (``kvm`` or ``tcg``), logging loudly which one and why.

    ``boot_fn()`` returns the probe's :class:`Boot` (it may build the kernel).
    """
    want = requested(accel)
    if want == "tcg":
        log(logger, "accelerator: TCG (software emulation), as requested")
        return "tcg"
    verdict_file = cache.accel_verdict
    fingerprint = host_fingerprint(qemu)
    verdict = None
    try:
        cached = json.loads(verdict_file.read_text())
        if cached.get("fingerprint") == fingerprint:
            verdict = (cached["kvm"], cached["reason"] + " (cached verdict)")
    except (OSError, ValueError, KeyError):
        pass
    if verdict is None:
        verdict = probe_kvm(boot_fn(), logger, qemu)
        verdict_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = verdict_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "kvm": verdict[0], "reason": verdict[1]}) + "\n")
        os.replace(tmp, verdict_file)
    works, reason = verdict
    if works:
        log(logger, f"accelerator: KVM ({reason})")
        return "kvm"
    if want == "kvm":
        setting = Settings.declaration("accel")
        raise HostError(f"KVM was requested ({setting.env}=kvm / {setting.flag} kvm) but does not work: {reason}")
    level = logging.INFO if reason.endswith("(cached verdict)") else logging.WARNING
    log(logger, f"accelerator: TCG (software emulation, slow) because KVM is unusable: {reason}", level=level)
    return "tcg"


def probe_boot(image: BootImage) -> Boot:
    """The probe's kernel and initrd: ``image``'s."""
    return Boot(image.kernel, image.initrd)


def choose_for(cache: Cache, image: BootImage, logger: logging.Logger, accel: str | None = None) -> str:
    """:func:`choose`, probing KVM (when it must) with ``image``'s kernel and initrd."""
    return choose(cache, lambda: Boot(image.kernel, image.initrd), logger, accel)
