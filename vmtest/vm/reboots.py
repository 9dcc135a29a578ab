"""The guest-reboot policy of one machine: what QEMU does when the guest reboots, and noticing that it did.

As NixOS: a reboot the guest starts itself ends QEMU (as a power-off, QEMU's
``set-action reboot=shutdown``) unless reboots are allowed; an asked-for
reboot (:meth:`vmtest.vm.lifecycle.VM.reboot`) always restarts the guest.
With reboots allowed, QMP ``RESET`` events tell that the guest rebooted by
itself, so the next command waits for its new shell. The lifecycle owns one
:class:`GuestReboots` and calls it under its lock.
"""

from __future__ import annotations

from vmtest.vm.channels import Channels, Monitor


class GuestReboots:
    """Whether guest reboots are allowed, and whether one is under way (its shell not yet answering)."""

    def __init__(self) -> None:
        self.allowed = False
        self.pending = False  # the guest is rebooting: the next wait for the shell waits for a boot

    def apply(self, monitor: Monitor, restart: bool | None = None) -> None:
        """Tell QEMU what a guest reboot does: restart the guest, or end as on a power-off (``-no-reboot``).

        ``restart`` defaults to the policy (:attr:`allowed`)."""
        restart = self.allowed if restart is None else restart
        monitor.command("set-action", reboot="reset" if restart else "shutdown")

    def allow(self, allow: bool, monitor: Monitor | None) -> None:
        """Allow (or not) reboots the guest starts itself: for every later launch, and now on ``monitor``."""
        self.allowed = allow
        if monitor is not None:
            self.apply(monitor)

    def noticed(self, monitor: Monitor | None) -> bool:
        """True (and a reboot pending) when reboots are allowed and the guest (running: ``monitor`` not None)
        rebooted since the last look."""
        if not (self.allowed and monitor is not None and monitor.take_resets()):
            return False
        self.pending = True
        return True

    def requested(self, monitor: Monitor) -> None:
        """An asked-for reboot is about to be sent: it restarts the guest whatever the policy."""
        if not self.allowed:
            self.apply(monitor, restart=True)

    def ask(self, channels: Channels | None) -> None:
        """Reboot the guest (``systemctl reboot`` through its shell), whatever the policy; its boot is pending."""
        assert channels is not None
        self.requested(channels.monitor)
        channels.shell.send_only("systemctl reboot")
        self.pending = True

    def finished(self, monitor: Monitor | None) -> None:
        """An asked-for reboot's shell answered (QEMU running: ``monitor`` not None): its RESET is no news;
        the policy applies again."""
        if monitor is None:
            return
        monitor.take_resets()
        if not self.allowed:
            self.apply(monitor)

    def take_pending(self) -> bool:
        """Whether a reboot was under way (the wait for its shell now begins)."""
        pending, self.pending = self.pending, False
        return pending
