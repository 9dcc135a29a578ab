"""Verbs whose host side can be checked without a guest: copy targets, the deprecated alias, streaming."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmtest import Machine
from vmtest.machine.commands import LOG_TTY, streamed


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Machine, list[Path]]:
    machine = Machine("m", output_dir=tmp_path / "out")
    seen: list[Path] = []

    def fake_copy(source: str, dest: Path, via_shell: bool = False) -> Path:
        seen.append(dest)
        return dest / Path(source).name

    monkeypatch.setattr(machine.files, "copy_from_vm", fake_copy)
    return machine, seen


def test_copy_from_machine_targets_the_output_directory(tmp_path: Path, copies: tuple[Machine, list[Path]]) -> None:
    machine, seen = copies
    assert machine.copy_from_machine("/etc/hostname") == tmp_path / "out" / "hostname"  # no target: the output dir
    machine.copy_from_machine("/etc/hostname", "logs/a")  # relative: inside the output dir
    machine.copy_from_machine("/etc/hostname", tmp_path / "abs")  # absolute: as it is
    assert seen == [tmp_path / "out", tmp_path / "out" / "logs" / "a", tmp_path / "abs"]


def test_copy_from_vm_is_a_deprecated_alias(tmp_path: Path, copies: tuple[Machine, list[Path]]) -> None:
    machine, seen = copies
    with pytest.warns(DeprecationWarning, match="use copy_from_machine"):
        assert machine.copy_from_vm("/etc/os-release", "x") == tmp_path / "out" / "x" / "os-release"
    assert seen == [tmp_path / "out" / "x"]


def test_streaming_is_scoped_to_its_block(copies: tuple[Machine, list[Path]]) -> None:
    machine, _ = copies
    assert not machine.commands.stream
    with machine.streaming():
        assert machine.commands.stream
    assert not machine.commands.stream


@pytest.mark.parametrize(("command", "status"), [("echo one; echo two", 0), ("echo one; exit 3", 3), ("false", 1)])
def test_a_streamed_command_keeps_its_output_and_status(tmp_path: Path, command: str, status: int) -> None:
    copy = tmp_path / "console"
    wrapped = streamed(command).replace(LOG_TTY, str(copy))
    # as the guest's backdoor runs a command
    run = subprocess.run(["bash", "-c", 'set -euo pipefail; eval "$1"', "-", wrapped], capture_output=True, text=True)
    assert run.returncode == status
    assert run.stdout == copy.read_text() and run.stdout.startswith("one\n" if "echo" in command else "")
