"""The machine's power verbs on its lifecycle: start, power off (cleanly, or a power loss), reboot, wait for
the guest to power off; each in its timed log section."""

from __future__ import annotations

from vmtest.vm.lifecycle import VM


class Power:
    def __init__(self, vm: VM) -> None:
        self.vm = vm

    def start(self, allow_reboot: bool) -> None:
        self.vm.set_allow_reboot(allow_reboot)
        self.vm.launch()

    def wait_for_shutdown(self, timeout: float) -> None:
        with self.vm.nested("waiting for the machine to power off"):
            self.vm.wait_for_exit(timeout)

    def shutdown(self, timeout: float) -> None:
        if not self.vm.is_running():
            return
        with self.vm.nested("shutting down"):
            self.vm.shutdown(timeout)

    def reboot(self, timeout: float) -> None:
        with self.vm.nested("rebooting"):
            self.vm.reboot(timeout)

    def crash(self) -> None:
        with self.vm.nested("crashing"):
            self.vm.kill()
