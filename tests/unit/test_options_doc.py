"""docs/options.md is generated from the option declarations and every row's proof exists."""

from __future__ import annotations

import re
from pathlib import Path

from vmtest.config.docs import markdown, reference
from vmtest.config.parity import NOT_DECLARED

REPO = Path(__file__).resolve().parents[2]

# Every option of nixos/modules/virtualisation/qemu-vm.nix (plus diskSize from disk-size-option.nix),
# typed in from the seed: the table must account for each exactly once.
SEED_OPTIONS = """
memorySize msize diskImage diskSize bootLoaderDevice bootPartition rootDevice emptyDiskImages graphics
resolution cores sharedDirectories additionalPaths forwardPorts restrictNetwork vlans interfaces
writableStore writableStoreUseTmpfs host.pkgs qemu.package qemu.options qemu.consoles
qemu.networkingOptions qemu.drives qemu.diskInterface qemu.guestAgent.enable qemu.virtioKeyboard
useNixStoreImage mountHostNixStore directBoot.enable directBoot.initrd useBootLoader installBootLoader
useBIOSBoot useEFIBoot efi.OVMF efi.firmware efi.variables efi.keepVariables tpm.enable tpm.package
tpm.deviceModel tpm.provisioning useDefaultFilesystems useSecureBoot bios useHostCerts fileSystems
""".split()


def test_docs_options_md_is_current() -> None:
    current = (REPO / "docs" / "options.md").read_text()
    assert current == markdown(), "docs/options.md is stale: run `vmtest options --markdown > docs/options.md`"


def test_every_seed_option_is_accounted_for_once() -> None:
    ours = [row["nixos"] for row in reference() if row["nixos"] != "virtualisation.qemu"]
    listed = ours + list(NOT_DECLARED)
    expected = {f"virtualisation.{name}" for name in SEED_OPTIONS}
    assert sorted(listed) == sorted(expected)


def test_every_proof_names_an_existing_test() -> None:
    for row in reference():
        if row["nixos"] == "virtualisation.qemu":
            continue
        path, _, name = row["proof"].partition("::")
        assert name, f"{row['name']}: proof {row['proof']!r} must be PATH::TEST"
        text = (REPO / path).read_text()
        assert re.search(rf"^\s*def {re.escape(name)}\(", text, re.M), f"{row['name']}: no {name} in {path}"
