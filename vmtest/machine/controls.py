"""What a test does to a machine from the QEMU side: monitor commands, QMP events, network links,
port forwarding and the guest agent (none of it goes through the guest's shell)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vmtest.core.errors import MachineError, Timeout
from vmtest.machine.part import Lifecycle
from vmtest.vm.agent import AgentError


class Controls:
    def __init__(self, vm: Lifecycle) -> None:
        self.vm = vm

    def monitor_command(self, command: str) -> str:
        with self.vm.nested(f"monitor: {command}"):
            return self.vm.monitor().human(command)

    def wait_for_qmp_event(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        monitor = self.vm.monitor()
        start = time.monotonic()
        event = monitor.wait_event(accept, timeout)
        if event is None:
            raise Timeout(
                self.vm.name,
                "waiting for a QMP event",
                f"none matched within {timeout:g}s",
                time.monotonic() - start,
                self.vm.console_tail(since=start),
            )
        return event

    def set_links(self, up: bool) -> None:
        with self.vm.nested(f"{'unblocking' if up else 'blocking'} its network links"):
            nics = self.vm.network.nic_ids
            if not nics:
                raise MachineError(self.vm.name, "block/unblock", "the machine has no VLAN interfaces")
            monitor = self.vm.monitor()
            for nic in nics:
                monitor.command("set_link", name=nic, up=up)

    def forward_port(self, host_port: int, guest_port: int, proto: str, host_address: str) -> None:
        with self.vm.nested(f"forwarding {proto}:{host_address}:{host_port} to guest port {guest_port}"):
            rule = f"{proto}:{host_address}:{host_port}-:{guest_port}"
            if not self.vm.config.virtualisation.user_network:
                raise MachineError(
                    self.vm.name,
                    f"forwarding {rule}",
                    "the machine has no user-mode network (it is added only for forwarded ports); "
                    "declare virtualisation.forward_ports in its config, e.g. this forwarding",
                )
            out = self.vm.monitor().human(f"hostfwd_add user0 {rule}").strip()
            if out:
                raise MachineError(self.vm.name, f"forwarding {rule}", f"QEMU refused: {out}")

    def guest_agent(self, command: str, timeout: float, arguments: dict[str, Any]) -> Any:
        with self.vm.nested(f"guest agent: {command}"):
            if not self.vm.config.virtualisation.qemu.guest_agent:
                raise MachineError(self.vm.name, f"guest agent {command}", "virtualisation.qemu.guest_agent is off")
            agent = self.vm.agent()  # (the machine runs)
            start = time.monotonic()
            try:
                return agent.call(command, timeout, **arguments)
            except AgentError as exc:
                raise MachineError(
                    self.vm.name,
                    f"guest agent {command}",
                    str(exc),
                    time.monotonic() - start,
                    self.vm.console_tail(since=start),
                ) from None
