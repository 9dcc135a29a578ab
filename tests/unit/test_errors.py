"""Error messages: what was attempted, on which machine, for how long, and why."""

from __future__ import annotations

import pytest

import vmtest
import vmtest.core.errors
from vmtest.core.errors import (
    CommandFailed,
    ConfigError,
    HostError,
    ImageBuildError,
    LaunchError,
    MachineError,
    Timeout,
    VmtestError,
)


def test_config_error_message() -> None:
    err = ConfigError("packages", ["Nginx"], "not a valid Debian package name", "use lower case")
    assert str(err) == "packages=['Nginx']: not a valid Debian package name (use lower case)"
    assert (err.field, err.value, err.why, err.fix) == (
        "packages",
        ["Nginx"],
        "not a valid Debian package name",
        "use lower case",
    )


def test_config_error_without_fix_has_no_parentheses() -> None:
    err = ConfigError("virtualisation.cores", 0, "out of range 1..256")
    assert str(err) == "virtualisation.cores=0: out of range 1..256"


def test_config_error_uses_repr_of_value() -> None:
    assert str(ConfigError("suite", "bo okworm", "bad")).startswith("suite='bo okworm': ")
    assert str(ConfigError("files", b"\x00", "bad")).startswith("files=b'\\x00': ")


def test_command_failed_message() -> None:
    err = CommandFailed(
        "server",
        "systemctl is-active nginx",
        3,
        "inactive\n",
        elapsed=2.0,
        console_tail=["[  OK  ] Started nginx.", "nginx[123]: bind() failed"],
    )
    text = str(err)
    assert text.startswith("server: command 'systemctl is-active nginx' failed after 2.0s: ")
    assert "expected exit status 0, got exit status 3" in text
    assert "--- output ---\ninactive\n" in text
    assert text.endswith("--- last console lines ---\n[  OK  ] Started nginx.\nnginx[123]: bind() failed")
    assert (err.machine, err.command, err.status, err.output) == (
        "server",
        "systemctl is-active nginx",
        3,
        "inactive\n",
    )
    assert err.console_tail == ["[  OK  ] Started nginx.", "nginx[123]: bind() failed"]


def test_command_failed_shows_stderr_before_the_output() -> None:
    err = CommandFailed("server", "cat /etc/nope", 1, "", 0.25, stderr="cat: /etc/nope: No such file or directory\n")
    text = str(err)
    assert "failed after 0.2s" in text or "failed after 0.3s" in text
    assert "failed after 12ms" in str(CommandFailed("server", "true", 1, "", 0.012))
    assert "--- stderr ---\ncat: /etc/nope: No such file or directory\n--- output: (empty) ---" in text
    assert err.stderr == "cat: /etc/nope: No such file or directory\n"
    long = CommandFailed("server", "x", 1, "", 1.0, stderr="e" * 5000)
    assert "[...]" in str(long) and len(str(long)) < 2500
    assert "--- stderr: (empty) ---" in str(CommandFailed("server", "false", 1, "out", 1.0))


def test_command_failed_custom_expectation() -> None:
    err = CommandFailed("client", "curl -f http://server", 0, "", 0.5, expected="a failure")
    assert "expected a failure, got exit status 0" in str(err)
    assert "last console lines" not in str(err)


def test_command_failed_shortens_long_output_in_the_middle() -> None:
    output = "A" * 1500 + "MIDDLE" + "B" * 1500
    text = str(CommandFailed("m", "cmd", 1, output, 1.0))
    assert "MIDDLE" not in text
    assert "\n[...]\n" in text
    shown = text.split("--- output ---\n", 1)[1]
    assert shown == "A" * 1000 + "\n[...]\n" + "B" * 1000


def test_command_failed_output_up_to_2000_chars_shown_whole() -> None:
    output = "C" * 1999 + "D"
    assert str(CommandFailed("m", "cmd", 1, output, 1.0)).endswith("--- output ---\n" + output)


def test_command_failed_keeps_full_output_attribute() -> None:
    output = "x" * 5000
    assert CommandFailed("m", "cmd", 1, output, 1.0).output == output


def test_machine_error_elapsed() -> None:
    err = MachineError("db", "boot", "QEMU exited with status 1", elapsed=1.5)
    assert str(err) == "db: boot failed after 1.5s: QEMU exited with status 1"
    assert err.elapsed == 1.5


def test_machine_error_without_elapsed() -> None:
    assert str(MachineError("db", "boot", "oops")) == "db: boot failed: oops"


def test_machine_error_console_tail() -> None:
    err = MachineError("db", "wait for unit", "timed out", 10.0, console_tail=("line 1", "line 2"))
    assert str(err) == "db: wait for unit failed after 10.0s: timed out\n--- last console lines ---\nline 1\nline 2"
    assert err.console_tail == ["line 1", "line 2"]


def test_image_build_error() -> None:
    err = ImageBuildError("running mmdebstrap", "exit status 1", ["E: unable to locate package nginxx"])
    assert str(err) == (
        "image build failed while running mmdebstrap: exit status 1\n"
        "--- last output lines ---\nE: unable to locate package nginxx"
    )
    assert str(ImageBuildError("packing", "no space")) == "image build failed while packing: no space"


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("f", 1, "why"),
        HostError("no qemu"),
        ImageBuildError("step", "msg"),
        MachineError("m", "a", "msg"),
        LaunchError("m", "launch", "msg"),
        CommandFailed("m", "cmd", 1, "", 0.0),
        Timeout("m", "wait", "msg", 1.0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_all_derive_from_vmtest_error(err: Exception) -> None:
    assert isinstance(err, VmtestError)
    assert isinstance(err, Exception)
    with pytest.raises(VmtestError):
        raise err


def test_machine_error_subclasses() -> None:
    for cls in (LaunchError, CommandFailed, Timeout):
        assert issubclass(cls, MachineError)
    assert not issubclass(ConfigError, MachineError)


def test_errors_exported_from_package() -> None:
    for name in (
        "CommandFailed",
        "ConfigError",
        "HostError",
        "ImageBuildError",
        "LaunchError",
        "MachineError",
        "Timeout",
        "VmtestError",
    ):
        assert getattr(vmtest, name) is getattr(vmtest.core.errors, name)
