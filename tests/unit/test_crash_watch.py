"""A guest kernel panic ends a waiting command at once, quoting the panic line; a boot loader refusing the
kernel ends the wait for the shell at once."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from vmtest.vm import crash
from vmtest.vm.backdoor import Backdoor, GuestCrashed

LOG = logging.getLogger("test")


class Console:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines


def test_watcher_sees_only_panics_printed_after_it_started() -> None:
    console = Console(["[    1.0] Kernel panic - not syncing: an old one", "boot"])
    check = crash.watcher(console)
    assert check() is None
    console.lines += ["[   20.1] sysrq: Trigger a crash", "[   20.2] Kernel panic - not syncing: sysrq triggered crash"]
    why = check()
    assert why is not None
    assert "the guest kernel panicked: 'Kernel panic - not syncing: sysrq triggered crash'" in why
    assert "sysrq: Trigger a crash" in why and "an old one" not in why
    assert crash.watcher(object())() is None  # a console without history is not watched


def test_a_panic_ends_the_wait_of_a_command_within_a_second() -> None:
    host, guest = socket.socketpair()
    console = Console([])
    shell = Backdoor("m", host, LOG, crash_watch=lambda: crash.watcher(console))
    try:
        start = time.monotonic()
        threading.Timer(0.3, console.lines.append, ["Kernel panic - not syncing: Attempted to kill init!"]).start()
        with pytest.raises(GuestCrashed, match="Attempted to kill init"):
            shell.run("sleep 100", 10)  # the guest never answers
        assert time.monotonic() - start < 2
    finally:
        host.close()
        guest.close()


def test_a_panic_whose_reboot_ends_qemu_is_named_not_a_closed_channel() -> None:
    """QEMU may exit at the panic's reboot: the backdoor sees EOF before the console's reader has the panic."""
    host, guest = socket.socketpair()
    console = Console([])
    console.closed = False  # type: ignore[attr-defined]
    shell = Backdoor("m", host, LOG, crash_watch=lambda: crash.watcher(console))

    def qemu_exits() -> None:
        guest.close()  # the backdoor's channel closes first
        time.sleep(0.3)  # then the console's reader reaches the end
        console.lines.append("Kernel panic - not syncing: sysrq triggered crash")
        console.closed = True  # type: ignore[attr-defined]

    threading.Timer(0.2, qemu_exits).start()
    try:
        with pytest.raises(GuestCrashed, match="sysrq triggered crash"):
            shell.run("echo c > /proc/sysrq-trigger", 10)
    finally:
        host.close()


def test_a_boot_loader_refusing_the_kernel_ends_the_wait_for_the_shell_at_once() -> None:
    """GRUB under Secure Boot refuses an unsigned kernel: nothing more comes, so the wait for the backdoor's
    banner ends with the boot loader's line rather than after its whole timeout."""
    host, guest = socket.socketpair()
    console = Console(["[    3.4] an earlier boot's last line"])
    shell = Backdoor("m", host, LOG, crash_watch=lambda: crash.watcher(console))
    grub = ["error: bad shim signature.", "error: you need to load the kernel first.", "Press any key to continue..."]
    try:
        start = time.monotonic()
        threading.Timer(0.3, console.lines.extend, [grub]).start()
        with pytest.raises(GuestCrashed) as info:
            shell.wait_ready(30, lambda: True)
        assert time.monotonic() - start < 3
        why = str(info.value)
        assert why.startswith("the boot loader refused the kernel: 'error: bad shim signature.'"), why
        assert "an earlier boot's last line" not in why
    finally:
        host.close()
        guest.close()
