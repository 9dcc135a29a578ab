"""What a failing command tells its user (real guest): its own stderr, its own time, the console lines
of the call (not the boot's), and a kernel that keeps quiet on the console once booted."""

from __future__ import annotations

import time

import pytest

from vmtest import CommandFailed, MachineConfig, Timeout

NOTE = "(no console output since this call began; the last lines before it:)"


def test_failing_command_shows_its_stderr_its_own_time_and_no_boot_chatter(vm_factory):
    vm = vm_factory("errs", MachineConfig(), snapshots=False)  # a real boot, made by the first command
    start = time.monotonic()
    with pytest.raises(CommandFailed) as info:
        vm.succeed("cat /etc/does-not-exist")
    boot_and_command = time.monotonic() - start
    err = info.value
    message = str(err)
    print(message)
    assert err.stderr == "cat: /etc/does-not-exist: No such file or directory\n"
    assert "--- stderr ---\ncat: /etc/does-not-exist: No such file or directory\n--- output: (empty) ---" in message
    # The command's own time, not the boot it waited for.
    # (a cold boot under TCG takes several seconds, a cat a fraction of one; no fixed line between them,
    # the host's load moves both)
    assert err.elapsed is not None and err.elapsed + 2 < boot_and_command, (err.elapsed, boot_and_command)
    assert "failed after " in message and f"{boot_and_command:.1f}s" not in message
    # The stderr is nowhere on the serial console (it no longer interleaves with kernel lines).
    assert "does-not-exist" not in vm.get_console_log()
    # Nothing reached the console during the `cat`: the error says so before quoting the lines before it.
    assert err.console_tail[0] == NOTE
    assert message.count("--- last console lines ---") == 1


def test_console_lines_of_the_failing_call_and_a_quiet_kernel(vm_factory):
    vm = vm_factory("quiet", MachineConfig())
    assert vm.succeed("cat /proc/sys/kernel/printk").split()[0] == "4"
    with pytest.raises(CommandFailed) as info:
        vm.succeed("echo console-marker-1 > /dev/ttyS0; echo '<6>kernel-info-marker' > /dev/kmsg; sleep 1; exit 5")
    tail = info.value.console_tail
    print(tail)
    assert "console-marker-1" in tail[0] and NOTE not in tail
    # An info-level kernel message stays off the console (it is in the journal and dmesg) ...
    assert "kernel-info-marker" not in vm.get_console_log()
    assert "kernel-info-marker" in vm.succeed("dmesg")
    # ... an error-level one still shows.
    vm.succeed("echo '<3>kernel-error-marker' > /dev/kmsg")
    vm.wait_for_console_text("kernel-error-marker", timeout=30)


def test_execute_result_carries_stderr_and_elapsed(vm_factory):
    vm = vm_factory("result", MachineConfig())
    result = vm.execute("echo out; echo err >&2; exit 2")
    status, out = result
    assert (status, out) == (2, "out\n") == result
    assert (result.status, result.stdout, result.stderr) == (2, "out\n", "err\n")
    assert 0 < result.elapsed < 10
    # stderr that is binary or huge comes back whole.
    assert vm.execute("printf 'a\\0b' >&2").stderr == "a\0b"
    big = vm.execute("head -c 300000 /dev/zero | tr '\\0' x >&2")
    assert big.stderr == "x" * 300000
    # fail() shows the stderr of a command that unexpectedly succeeded, too.
    with pytest.raises(CommandFailed) as info:
        vm.fail("echo warning-text >&2; true")
    assert "--- stderr ---\nwarning-text" in str(info.value)
    # A wait that runs out of time quotes the last try's stderr.
    with pytest.raises(Timeout) as waited:
        vm.wait_until_succeeds("cat /etc/never-there", timeout=3)
    assert "stderr 'cat: /etc/never-there: No such file or directory\\n'" in str(waited.value)
