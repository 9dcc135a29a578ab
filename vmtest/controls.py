"""QEMU-side controls of a running machine: monitor commands, QMP events, links, forwarding, guest agent.

A mixin of :class:`vmtest.machine.Machine` (it uses the machine's name,
monitor, network, config and state directory); everything here talks to
QEMU or to the guest agent, never to the backdoor shell.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .agent import AgentError, GuestAgent
from .errors import MachineError, Timeout
from .qemu import MachinePaths

if TYPE_CHECKING:
    from .machine import Machine

    _Base = Machine
else:
    _Base = object


class QemuControls(_Base):
    # -- monitor ---------------------------------------------------------------------

    def send_monitor_command(self, command: str) -> str:
        """Run a human-monitor (HMP) command, e.g. ``info status``; return its output."""
        if not self._should_run:
            self.start()
        assert self.monitor is not None
        with self.nested(f"monitor: {command}"):
            return self.monitor.human(command)

    def wait_for_qmp_event(self, event_filter, timeout: float = 600) -> dict:
        """Wait for a QMP event for which ``event_filter(event)`` is true and return it."""
        assert self.monitor is not None, "the machine is not running"
        start = time.monotonic()
        event = self.monitor.wait_event(event_filter, timeout)
        if event is None:
            raise Timeout(self.name, "waiting for a QMP event", f"none matched within {timeout:g}s",
                          time.monotonic() - start, self.console_tail())
        return event

    # -- network -----------------------------------------------------------------

    def _set_links(self, up: bool) -> None:
        if self.network is None or not self.network.nic_ids:
            raise MachineError(self.name, "block/unblock", "the machine has no VLAN interfaces")
        if not self._should_run:
            self.start()
        assert self.monitor is not None
        for nic in self.network.nic_ids:
            self.monitor.command("set_link", name=nic, up=up)

    def forward_port(self, host_port: int, guest_port: int, proto: str = "tcp",
                     host_address: str = "127.0.0.1") -> None:
        """Forward ``host_address:host_port`` on the host to ``guest_port`` in the running guest.

        Needs the user-mode NIC, which a machine has when its config declares
        ``virtualisation.forward_ports``.
        """
        if not self.config.virtualisation.user_network:
            raise MachineError(self.name, f"forwarding host port {host_port}",
                               "the machine has no user-mode network (it is added only for forwarded ports); "
                               "declare virtualisation.forward_ports in its config, e.g. this forwarding")
        if not self._should_run:
            self.start()
        assert self.monitor is not None
        rule = f"{proto}:{host_address}:{host_port}-:{guest_port}"
        with self.nested(f"forwarding {rule}"):
            out = self.monitor.human(f"hostfwd_add user0 {rule}").strip()
        if out:
            raise MachineError(self.name, f"forwarding {rule}", f"QEMU refused: {out}")

    def guest_agent(self, command: str, timeout: float = 60.0, **arguments: object) -> object:
        """Run a qemu-guest-agent command (e.g. ``"guest-ping"``, ``"guest-info"``) and return its result."""
        if not self.config.virtualisation.qemu.guest_agent:
            raise MachineError(self.name, f"guest agent {command}", "virtualisation.qemu.guest_agent is off")
        if not self._should_run:
            self.start()
        start = time.monotonic()
        with self.nested(f"guest agent: {command}"):
            try:
                return GuestAgent(MachinePaths(self.state_dir).agent).call(command, timeout, **arguments)
            except AgentError as exc:
                raise MachineError(self.name, f"guest agent {command}", str(exc), time.monotonic() - start,
                                   self.console_tail()) from None

    def block(self) -> None:
        """Cut the machine's VLAN links (as if the cables were pulled)."""
        with self.nested("blocking its network links"):
            self._set_links(False)

    def unblock(self) -> None:
        """Restore the machine's VLAN links."""
        with self.nested("unblocking its network links"):
            self._set_links(True)
