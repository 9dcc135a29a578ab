"""Mixins of :class:`vmtest.machine.Machine` for what is not the backdoor shell.

``QemuControls``: monitor commands, QMP events, links, forwarding, the guest
agent. ``ScreenControls``: the display, keyboard, virtual terminals and X11
(thin wrappers over :mod:`vmtest.screen`, :mod:`vmtest.keys` and
:mod:`vmtest.display`). Both use the machine's name, monitor, config and
state; ``Machine`` owns the lifecycle and the command channel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from vmtest.machine import keys

from vmtest.vm.agent import AgentError, GuestAgent
from vmtest.core.errors import MachineError, Timeout
from vmtest.vm.argv import MachinePaths

if TYPE_CHECKING:
    from vmtest.machine.machine import Machine

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


class ScreenControls(_Base):
    # -- screen, keyboard, TTYs, X11 (see vmtest.screen, vmtest.keys, vmtest.display) --

    def screenshot(self, name: str) -> Path:
        """Save a PNG of the display as ``<output dir>/<name>.png`` (QMP screendump); return its path."""
        with self.nested(f"taking screenshot {name}"):
            return self.screen.screenshot(name)

    def get_screen_text(self) -> str:
        """The text on the screen: read exactly cell by cell when it is a console (character grid),
        else by tesseract."""
        with self.nested("reading the screen"):
            return self.screen.text()

    def get_screen_text_variants(self) -> list[str]:
        """The screen as read by every reader: the grid reader (consoles) and tesseract on each
        enhanced variant (raw, grayscale, thresholded, inverted), run in parallel."""
        with self.nested("reading the screen (all variants)"):
            return self.screen.variants()

    def wait_for_text(self, regex: str, timeout: float = 900) -> str:
        """Wait until ``regex`` matches the screen's text as read by any reader; return that reading.

        A fresh screenshot each round; on timeout the error names the saved
        last screenshot and quotes what each reader saw.
        """
        with self.nested(f"waiting for {regex!r} on the screen"):
            return self.screen.wait_for_text(regex, timeout)

    def send_key(self, key: str, delay: float | None = 0.01) -> None:
        """Press a key or combination (QEMU key names: ``ret``, ``f2``, ``ctrl-alt-delete``, ``alt-f2``)."""
        self._send_keys(keys.parse_combo(key), delay)

    def send_chars(self, chars: str, delay: float | None = 0.01) -> None:
        """Type ``chars`` on the guest's keyboard (printable ASCII, tab and newline; US layout)."""
        combos = keys.text_keys(chars)
        with self.nested(f"sending keys {chars!r}"):
            for combo in combos:
                self._send_keys(combo, delay)

    def _send_keys(self, combo: list[str], delay: float | None) -> None:
        if not self._should_run:
            self.start()
        assert self.monitor is not None
        self.monitor.command("send-key", keys=keys.qmp_keys(combo))
        if delay:
            time.sleep(delay)

    def get_tty_text(self, tty: int) -> str:
        """The text shown on virtual terminal ``tty`` (from /dev/vcsu<tty>; exact, no OCR)."""
        return self.display.tty_text(tty)

    def wait_until_tty_matches(self, tty: int, regex: str, timeout: float = 900) -> str:
        """Wait until ``regex`` matches the text of virtual terminal ``tty``; return that text."""
        with self.nested(f"waiting for {regex!r} on tty{tty}"):
            return self.display.wait_until_tty_matches(tty, regex, timeout)

    def dump_tty_contents(self, tty: int) -> str:
        """Log the text of virtual terminal ``tty`` and return it."""
        text = self.get_tty_text(tty)
        self.log(f"tty{tty} shows:\n{text}")
        return text

    def wait_for_x(self, timeout: float = 900) -> None:
        """Wait until an X server answers on display ``:0``."""
        with self.nested("waiting for the X server"):
            self.display.wait_for_x(timeout)

    def get_window_names(self) -> list[str]:
        """Names of the X11 windows on ``:0`` (``xwininfo -root -tree``; needs x11-utils in the guest)."""
        return self.display.window_names()

    def wait_for_window(self, regex: str, timeout: float = 900) -> str:
        """Wait until an X11 window whose name matches ``regex`` exists; return its name."""
        with self.nested(f"waiting for an X11 window matching {regex!r}"):
            return self.display.wait_for_window(regex, timeout)
