"""``Machine``: one virtual machine as a test sees it — the flat verb API of the NixOS test driver.

The machine is a facade. Its lifecycle (QEMU, channels, states) is a
:class:`~vmtest.vm.lifecycle.VM`; each group of verbs is a part built on the
lifecycle's narrow interface (:mod:`vmtest.machine.part`): commands, systemd,
waits, files, screen, serial console, keyboard, terminals, QEMU controls (and
power, on the lifecycle's own verbs). Every verb delegates to its part, which
opens the verb's timed log section; nothing starts at construction: the
machine boots on first use, or on ``start()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vmtest.config.machine import MachineConfig
from vmtest.config.settings import Settings
from vmtest.image import ImageStore
from vmtest.machine.commands import DEFAULT_TIMEOUT, CommandResult, Commands
from vmtest.machine.compat import NixosAliases
from vmtest.machine.controls import Controls
from vmtest.machine.files import Files
from vmtest.machine.interact import console_interact, shell_interact
from vmtest.machine.keyboard import Keyboard
from vmtest.machine.polling import PollingCondition
from vmtest.machine.power import Power
from vmtest.machine.screen import Screen
from vmtest.machine.serial import Serial
from vmtest.machine.systemd import Systemd
from vmtest.machine.terminals import Terminals
from vmtest.machine.waits import Waits
from vmtest.vm.channels import CONSOLE_TAIL, NetworkAttachment
from vmtest.vm.lifecycle import DEFAULT_BOOT_TIMEOUT, VM
from vmtest.vm.restore import Choice
from vmtest.vm.state import State


class Machine(NixosAliases):
    """A QEMU virtual machine built from a :class:`~vmtest.MachineConfig`.

    Tests get machines from the plugin (node fixtures, ``vm_factory``); nothing
    starts at construction. As a context manager, a machine is released on exit.
    """

    def __init__(
        self,
        name: str,
        config: MachineConfig | None = None,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        store: ImageStore | None = None,
        accel: str | None = None,
        keep_state: bool = False,
        kept_dir: str | os.PathLike[str] | None = None,
        network: NetworkAttachment | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        polling_conditions: list[PollingCondition] | None = None,
        snapshots: bool | None = None,
    ) -> None:
        #: The machine's name: its node name in a test network, and the guest's host name.
        self.name = name
        #: The machine's declaration.
        self.config = config or MachineConfig()
        store = store or ImageStore()
        self.vm = VM(
            name,
            self.config,
            store=store,
            accel=accel,
            state_dir=Path(state_dir) if state_dir else None,
            keep_state=keep_state,
            kept_dir=Path(kept_dir) if kept_dir else None,
            network=network,
            snapshots=Choice.of(store, snapshots),
        )
        self.logger = self.vm.logger
        # Checked before every guest command; a Driver shares one list between its machines.
        self.polling_conditions: list[PollingCondition] = polling_conditions if polling_conditions is not None else []
        self.commands = Commands(self.vm, self.polling_conditions)
        self.systemd = Systemd(self.commands)
        self.waits = Waits(self.commands)
        self.files = Files(self.commands)
        default_output = Settings.active().output_dir / name
        self.screen = Screen(self.commands, Path(output_dir) if output_dir else default_output)
        self.keyboard = Keyboard(self.vm)
        self.terminals = Terminals(self.commands)
        self.controls = Controls(self.vm)
        self.serial = Serial(self.vm)
        self.power = Power(self.vm)

    def __repr__(self) -> str:
        return f"<Machine {self.name} {self.state.value}>"

    # -- state and logging ---------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the machine is in its lifecycle (:class:`~vmtest.State`)."""
        return self.vm.state

    @property
    def state_dir(self) -> Path | None:
        """The machine's state directory (sockets, logs, disks), once it has started."""
        return self.vm.dirs.path

    @property
    def pid(self) -> int | None:
        """QEMU's process id while it runs (or of its last run)."""
        return self.vm.pid

    @property
    def output_dir(self) -> Path:
        """Where screenshots go (the plugin points it at the test's output directory)."""
        return self.screen.output_dir

    @output_dir.setter
    def output_dir(self, path: str | os.PathLike[str]) -> None:
        self.screen.output_dir = Path(path)

    @property
    def serial_echo(self) -> bool:
        """Whether serial-console lines are logged (``name # line``)."""
        return self.vm.serial_echo

    @serial_echo.setter
    def serial_echo(self, on: bool) -> None:
        self.vm.serial_echo = on
        if self.vm.channels is not None:
            self.vm.channels.console.echo = on

    def log(self, msg: str) -> None:
        """Log ``msg`` under this machine's name."""
        self.vm.log(msg)

    @contextmanager
    def nested(self, msg: str) -> Iterator[None]:
        """A timed, indented log section: ``with machine.nested("doing x"): ...``."""
        with self.vm.nested(msg):
            yield

    def console_tail(self, n: int = CONSOLE_TAIL, since: float | None = None) -> list[str]:
        """The last ``n`` lines the serial console printed; with ``since`` (a :func:`time.monotonic`
        time) those printed since then, or, when there are none, a note and the last lines before it."""
        return self.serial.tail(n, since)

    def get_console_log(self) -> str:
        """Everything the serial console printed in this machine's runs so far."""
        return self.serial.log()

    # -- lifecycle -------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the QEMU process is alive."""
        return self.vm.is_running()

    def is_up(self) -> bool:
        """True when QEMU runs and the backdoor shell has answered."""
        return self.vm.is_ready()

    def start(self, allow_reboot: bool = False) -> None:
        """Build the image if needed and launch QEMU; returns without waiting for the boot.

        As in NixOS, a reboot the guest starts itself (``reboot`` in a command, a panic) ends QEMU
        like a power-off unless ``allow_reboot=True`` (then the guest restarts); :meth:`reboot` works
        either way. A machine started by its first use does not allow reboots."""
        self.power.start(allow_reboot)

    def connect(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Start the machine if needed and wait until its backdoor shell answers (default timeout 300 s)."""
        self.vm.wait_ready(timeout)

    def wait_for_shutdown(self, timeout: float = 120) -> None:
        """Wait until QEMU exits because the guest powered off (default timeout 120 s)."""
        self.power.wait_for_shutdown(timeout)

    def shutdown(self, timeout: float = 120) -> None:
        """Power the guest off cleanly (``systemctl poweroff``) and wait for QEMU to exit (default 120 s)."""
        self.power.shutdown(timeout)

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Reboot the guest (``systemctl reboot``) and wait until its shell answers again (default 300 s)."""
        self.power.reboot(timeout)

    def crash(self) -> None:
        """Simulate a power loss: QEMU is killed at once (the disk keeps what was flushed)."""
        self.power.crash()

    def release(self) -> None:
        """Kill QEMU if it still runs, close every channel, remove a temporary state dir. Idempotent."""
        self.vm.release()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- commands ----------------------------------------------------------------------------

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> CommandResult:
        """Run ``command`` (bash, ``set -euo pipefail``) in the guest; return (exit status, stdout).

        The pair is a :class:`~vmtest.machine.commands.CommandResult`, which also carries the command's
        ``stderr`` and ``elapsed`` (its own time, without a boot it waited for). stdin is /dev/null;
        stderr is captured apart from stdout (and shown by :class:`~vmtest.CommandFailed`). Output is
        byte-exact: undecodable bytes are kept as surrogates (``out.encode(errors="surrogateescape")``
        gives the raw bytes). A command
        still running after ``timeout`` seconds (default 900) is killed in the
        guest and raises :class:`~vmtest.Timeout`. ``check_return``/``check_output``
        exist for NixOS compatibility: the status and output are always
        collected (``check_output=False`` returns "" as output).
        """
        return self.commands.execute(command, check_return, check_output, timeout)

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise :class:`~vmtest.CommandFailed` unless all exit 0. Returns their joined
        stdout. ``timeout`` applies to each command (default 900 s)."""
        return self.commands.succeed(commands, timeout)

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise :class:`~vmtest.CommandFailed` if any exits 0. Returns their joined stdout."""
        return self.commands.fail(commands, timeout)

    def wait_until_succeeds(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Repeat ``command`` until it exits 0 (pausing between tries); return its output.
        :class:`~vmtest.Timeout` after ``timeout`` seconds (default 900)."""
        return self.commands.wait_for_status(command, True, timeout)

    def wait_until_fails(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Repeat ``command`` until it exits non-zero; return its output (default timeout 900 s)."""
        return self.commands.wait_for_status(command, False, timeout)

    # -- systemd -------------------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run ``systemctl q`` (for ``user``: ``systemctl --user`` in their session); return (status, output)."""
        return self.systemd.systemctl(q, user)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """All properties of ``unit`` (``systemctl show``) as a dict."""
        return self.systemd.unit_info(unit, user)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        """One property of ``unit`` (``systemctl show -p``)."""
        return self.systemd.unit_property(unit, property, user)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``unit`` is active (default timeout 900 s); raise :class:`~vmtest.UnitFailed` at once
        if it failed, or is inactive with no job pending (the message then includes ``systemctl status``)."""
        self.systemd.wait_for_unit(unit, user, timeout)

    def require_unit_state(self, unit: str, require_state: str = "active", user: str | None = None) -> None:
        """Raise :class:`~vmtest.UnitFailed` unless ``unit``'s ActiveState is ``require_state``."""
        self.systemd.require_unit_state(unit, require_state, user)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``path`` exists in the guest (default timeout 900 s)."""
        self.waits.wait_for_file(path, timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until something accepts TCP connections on ``addr:port`` as seen from the guest (default 900 s)."""
        self.waits.wait_for_open_port(port, addr, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until nothing accepts TCP connections on ``addr:port`` (default 900 s)."""
        self.waits.wait_for_closed_port(port, addr, timeout)

    def wait_for_open_unix_socket(self, path: str, is_datagram: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a unix socket at ``path`` accepts connections (default 900 s)."""
        self.waits.wait_for_open_unix_socket(path, is_datagram, timeout)

    def wait_for_console_text(self, regex: str, timeout: float | None = None) -> str:
        """Wait for a serial-console line matching ``regex`` and return it (default: no time limit, until
        QEMU exits). Lines printed before the call count too (since the previous match): none is lost."""
        return self.serial.wait_for_text(regex, timeout)

    def send_console(self, text: str) -> None:
        """Write ``text`` to the serial console (ttyS0), as if typed there."""
        self.serial.send(text)

    def shell_interact(self) -> None:
        """A root shell in the guest on this terminal until Ctrl-] (through its virtio console,
        hvc0, not the test's command channel); for ``vmtest shell``, a debugger or a paused test."""
        shell_interact(self.vm)

    def console_interact(self) -> None:
        """The serial console on this terminal (keys go to ttyS0) until Ctrl-]."""
        console_interact(self.vm)

    # -- files --------------------------------------------------------------------------------------

    @property
    def shared_dir(self) -> Path:
        """Host directory shared with the guest (9p) and mounted there at ``/tmp/xchg``."""
        return self.files.shared_dir

    def copy_from_host(self, source: str | os.PathLike[str], target: str, via_shell: bool = False) -> None:
        """Copy a host file or directory tree (modes kept) to ``target`` in the guest.

        Goes through the shared directory (9p); ``via_shell=True``, or a guest
        without the share, sends it through the backdoor instead.
        """
        self.files.copy_from_host(source, target, via_shell)

    def copy_from_machine(self, source: str, target_dir: str | os.PathLike[str] = "", via_shell: bool = False) -> Path:
        """Copy a guest file or directory tree (modes kept) into ``target_dir`` on the host and return
        the host path of the copy, ``<target_dir>/<name of source>``. As in NixOS, a relative (or no)
        ``target_dir`` is taken in the test's output directory (``<output dir>/<test id>/``, where it
        stays after the test); an absolute one is used as it is. (``copy_from_vm``: deprecated alias.)"""
        dest = self.output_dir / target_dir
        return self.files.copy_from_vm(source, dest, via_shell)

    # -- screen, keyboard, terminals ----------------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        """Save a PNG of the display as ``<output dir>/<name>.png`` (QMP screendump); return its path."""
        return self.screen.screenshot(name)

    def get_screen_text(self) -> str:
        """The text on the screen: read exactly cell by cell when it is a console (character grid),
        else by tesseract."""
        return self.screen.text()

    def get_screen_text_variants(self) -> list[str]:
        """The screen as read by every reader: the grid reader (consoles) and tesseract on each
        enhanced variant (raw, grayscale, thresholded, inverted), run in parallel."""
        return self.screen.variants()

    def wait_for_text(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until ``regex`` matches the screen's text as read by any reader; return that reading.

        A fresh screenshot each round (default timeout 900 s); on timeout
        :class:`~vmtest.TextNotFound` names the saved last screenshot and quotes what each reader saw.
        """
        return self.screen.wait_for_text(regex, timeout)

    def send_key(self, key: str, delay: float | None = 0.01) -> None:
        """Press a key or combination (QEMU key names: ``ret``, ``f2``, ``ctrl-alt-delete``, ``alt-f2``)."""
        self.keyboard.send_key(key, delay)

    def send_chars(self, chars: str, delay: float | None = 0.01) -> None:
        """Type ``chars`` on the guest's keyboard (printable ASCII, tab and newline; US layout)."""
        self.keyboard.send_chars(chars, delay)

    def get_tty_text(self, tty: int) -> str:
        """The text shown on virtual terminal ``tty`` (from /dev/vcsu<tty>; exact, no OCR)."""
        return self.terminals.tty_text(tty)

    def wait_until_tty_matches(self, tty: int, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until ``regex`` matches the text of virtual terminal ``tty``; return that text (default 900 s)."""
        return self.terminals.wait_until_tty_matches(tty, regex, timeout)

    def wait_for_x(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until an X server answers on display ``:0`` (default 900 s)."""
        self.terminals.wait_for_x(timeout)

    def get_window_names(self) -> list[str]:
        """Names of the X11 windows on ``:0`` (``xwininfo -root -tree``; needs x11-utils in the guest)."""
        return self.terminals.window_names()

    def wait_for_window(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until an X11 window whose name matches ``regex`` exists; return its name (default 900 s)."""
        return self.terminals.wait_for_window(regex, timeout)

    # -- QEMU controls ---------------------------------------------------------------------------------

    def send_monitor_command(self, command: str) -> str:
        """Run a human-monitor (HMP) command, e.g. ``info status``; return its output."""
        return self.controls.monitor_command(command)

    def wait_for_qmp_event(
        self, event_filter: Callable[[dict[str, Any]], bool], timeout: float = 600
    ) -> dict[str, Any]:
        """Wait for a QMP event for which ``event_filter(event)`` is true and return it (default 600 s)."""
        return self.controls.wait_for_qmp_event(event_filter, timeout)

    def block(self) -> None:
        """Cut the machine's VLAN links (as if the cables were pulled)."""
        self.controls.set_links(False)

    def unblock(self) -> None:
        """Restore the machine's VLAN links."""
        self.controls.set_links(True)

    def forward_port(
        self, host_port: int, guest_port: int, proto: str = "tcp", host_address: str = "127.0.0.1"
    ) -> None:
        """Forward ``host_address:host_port`` on the host to ``guest_port`` in the running guest.

        Needs the user-mode NIC, which a machine has when its config declares
        ``virtualisation.forward_ports``.
        """
        self.controls.forward_port(host_port, guest_port, proto, host_address)

    def guest_agent(self, command: str, timeout: float = 60.0, **arguments: object) -> object:
        """Run a qemu-guest-agent command (e.g. ``"guest-ping"``, ``"guest-info"``) and return its result
        (default timeout 60 s)."""
        return self.controls.guest_agent(command, timeout, dict(arguments))
