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
