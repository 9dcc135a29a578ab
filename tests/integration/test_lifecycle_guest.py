"""The machine lifecycle on a real guest: states as a test sees them."""

from __future__ import annotations

from vmtest import MachineConfig, State


def test_states_through_boot_shutdown_and_lazy_restart(vm_factory):
    vm = vm_factory("cycle", MachineConfig())
    assert vm.state is State.CREATED and vm.pid is None
    vm.start()
    assert vm.state is State.RUNNING and vm.is_running()
    vm.connect()
    assert vm.state is State.READY and vm.is_up()
    assert vm.succeed("hostname").strip() == "cycle"
    first = vm.pid
    vm.shutdown()
    assert vm.state is State.STOPPED and not vm.is_running()
    assert vm.succeed("echo again") == "again\n"  # a command boots a stopped machine again
    assert vm.state is State.READY and vm.pid != first
    assert "Linux version" in vm.get_console_log()


def test_guest_reboot_ends_qemu_unless_allow_reboot(vm_factory):
    """As NixOS's ``-no-reboot``: a reboot the guest starts itself powers the machine off; with
    ``start(allow_reboot=True)`` the guest restarts and the next command waits for its new shell."""
    vm = vm_factory("rebooter", MachineConfig())
    vm.start()
    # A systemd timer fires up to AccuracySec (default 1 min) late: ask for 1 s +- 0.1 s (it fired after 1-60 s)
    reboot = "systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot"
    vm.succeed(reboot)
    vm.wait_for_shutdown(timeout=180)
    assert vm.state is State.STOPPED and not vm.is_running()

    # Reboots allowed, on a machine of its own: started from its booted snapshot, where this one would boot
    # from its disk again (that restart: test_states_through_boot_shutdown_and_lazy_restart).
    vm = vm_factory("rebooter2", MachineConfig())
    vm.start(allow_reboot=True)
    boot_id = vm.succeed("cat /proc/sys/kernel/random/boot_id")
    pid = vm.pid
    vm.succeed(reboot)
    vm.wait_for_qmp_event(lambda e: e["event"] == "RESET", timeout=180)
    assert vm.succeed("cat /proc/sys/kernel/random/boot_id") != boot_id  # a new boot of the same QEMU
    assert vm.pid == pid and vm.is_running()
    vm.reboot()  # the verb still works with reboots allowed
    assert vm.succeed("echo up") == "up\n" and vm.pid == pid
