"""The guest-reboot policy (vmtest.vm.reboots) on its own: what it tells QEMU and when a reboot is pending."""

from test_lifecycle import FakeMonitor

from vmtest.vm.reboots import GuestReboots


def test_the_policy_is_applied_at_once_and_a_reset_counts_only_when_reboots_are_allowed() -> None:
    monitor, reboots = FakeMonitor(), GuestReboots()
    reboots.apply(monitor)
    monitor.resets = 1
    assert not reboots.noticed(monitor)  # not allowed: a RESET is no reboot to wait for (QEMU ends instead)
    reboots.allow(True, monitor)
    monitor.resets = 1
    assert reboots.noticed(monitor) and reboots.take_pending() and not reboots.take_pending()
    assert not reboots.noticed(monitor)  # that RESET was taken
    reboots.allow(False, None)  # QEMU not running: only later launches see it
    assert monitor.actions == ["shutdown", "reset"] and not reboots.allowed


def test_an_asked_for_reboot_restarts_the_guest_then_the_policy_applies_again() -> None:
    monitor, reboots = FakeMonitor(), GuestReboots()
    reboots.requested(monitor)
    monitor.resets = 1  # the reboot's own RESET
    reboots.finished(monitor)
    assert monitor.actions == ["reset", "shutdown"] and monitor.resets == 0
    allowed = FakeMonitor()
    reboots.allow(True, allowed)
    reboots.requested(allowed)
    reboots.finished(allowed)
    assert allowed.actions == ["reset"]  # allowed already: nothing to switch
