"""docs/options.md is generated from the declarations: current, complete, and every proof exists."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vmtest.cli.main import main
from vmtest.config.docs import machine_reference, markdown, reference, settings_reference
from vmtest.config.machine import MachineConfig
from vmtest.config.parity import NOT_DECLARED, STATUSES
from vmtest.config.settings import Settings

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


def _section(title: str) -> str:
    text = (REPO / "docs" / "options.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_every_machine_config_field_has_a_row() -> None:
    section = _section("Machine configuration")
    assert [row["name"] for row in machine_reference()] == [f.name for f in dataclasses.fields(MachineConfig)]
    for f in dataclasses.fields(MachineConfig):
        assert re.search(rf"^\| `{f.name}` \| `", section, re.M), f"no row for MachineConfig.{f.name}"


def test_every_run_setting_has_a_row_with_flag_env_and_ini() -> None:
    section = _section("Run settings")
    assert [row["name"] for row in settings_reference()] == [f.name for f in dataclasses.fields(Settings)]
    for f in dataclasses.fields(Settings):
        decl = Settings.declaration(f.name)
        assert f"| `{f.name}` | `{decl.flag}` | `{decl.env}` | `{decl.ini}` |" in section, f"no row for {f.name}"


def test_every_virtualisation_option_and_seed_option_has_a_row() -> None:
    section = _section("Virtualisation options")
    for row in reference():
        assert f"| `{row['nixos']}` | `{row['name']}` |" in section
    for nixos, (status, _) in NOT_DECLARED.items():
        assert status in STATUSES
        assert f"| `{nixos}` | - | - | - | {status} |" in section


def test_vmtest_options_prints_the_file(capsys) -> None:
    assert main(["options", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown()
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    for row in machine_reference() + reference() + settings_reference():
        assert row["doc"] in out
