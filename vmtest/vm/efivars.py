"""One UEFI machine's variable store: where it lives, and its creation from the firmware's template.

OVMF keeps its variables (boot entries, ``SecureBoot``, whatever the guest
writes through efivarfs) in the second flash chip, a raw file. Each machine
gets a writable copy of the template (``efi.variables``), made when missing,
as the seed's start script copies it to ``$NIX_EFI_VARS``. Where it lives
(:func:`store_path`, pure):

* ``$VMTEST_EFI_VARS`` when set (``{name}`` replaced by the machine's name):
  the user's file, never removed;
* with ``efi.keep_variables``, the machine's *kept* directory (the
  directory ``--vm-keep-state`` would keep its state in: the next run of the
  same test finds it there);
* else ``efi-vars.fd`` in the state directory (kept across ``reboot()``, and
  with ``--vm-keep-state`` across runs).

A booted snapshot holds a copy of the store as it was when QEMU's state was
saved (the flash contents are in QEMU's state too, and the file must agree with
them): a restore copies it over the machine's store.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import LaunchError

ENV = "VMTEST_EFI_VARS"
FILE = "efi-vars.fd"


def store_path(
    name: str, config: MachineConfig, state_dir: Path, kept_dir: Path | None, environ: Mapping[str, str]
) -> Path | None:
    """The variable store of machine ``name`` (None: the machine boots no UEFI firmware). Pure."""
    virt = config.virtualisation
    if not virt.use_efi_boot:
        return None
    given = environ.get(ENV)
    if given:
        return Path(given.replace("{name}", name)).absolute()
    if virt.efi.keep_variables and kept_dir is not None:
        return kept_dir / FILE
    return state_dir / FILE


def template(config: MachineConfig) -> Path:
    """The variable store a new machine starts from (``efi.variables`` or its default)."""
    virt = config.virtualisation
    return Path(virt.efi.files(virt.use_secure_boot)[1])


def prepare(name: str, config: MachineConfig, store: Path, logger: logging.Logger, source: Path | None = None) -> None:
    """Make ``store`` if it is missing, from the template (``source`` given: always, from that file, e.g. a
    snapshot's copy). Writable by its owner, as the seed's ``chmod 0644``."""
    if source is None and store.exists():
        return
    origin = source or template(config)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f".{store.name}.{os.getpid()}.tmp")
        shutil.copyfile(origin, tmp)
        tmp.chmod(0o644)
        os.replace(tmp, store)
    except OSError as exc:
        raise LaunchError(
            name,
            "making its UEFI variable store (virtualisation.efi.variables)",
            f"cannot copy {origin} to {store}: {exc}"
            + (f"; ${ENV} names where it goes" if os.environ.get(ENV) else ""),
        ) from None
    logger.debug("%s: UEFI variable store %s made from %s", name, store, origin)
