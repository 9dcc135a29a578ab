"""``Machine``: one virtual machine as a test sees it.

A facade over parts that each own one channel: the QEMU process
(:mod:`vmtest.proc`), QMP (:mod:`vmtest.qmp`), the serial console
(:mod:`vmtest.console`) and the backdoor shell (:mod:`vmtest.backdoor`).
Construction has no side effects; ``start()`` builds the image if needed,
launches QEMU paused, attaches every channel and lets the guest run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmtest.vm import accel as accel_mod
from vmtest.vm import disks, guestsetup
from vmtest.machine import polling
from vmtest.machine.controls import QemuControls, ScreenControls
from vmtest.vm.backdoor import Backdoor, BackdoorClosed, BackdoorTimeout
from vmtest.config.machine import MachineConfig
from vmtest.config.settings import Settings
from vmtest.vm.console import SerialConsole
from vmtest.core.errors import CommandFailed, LaunchError, MachineError, Timeout
from vmtest.machine.terminals import Display
from vmtest.machine.guest import GuestOps
from vmtest.image import BootImage, ImageStore
from vmtest.core.log import get_logger, log, nested
from vmtest.core.proc import ProcessError, kill_group, run, spawn
from vmtest.vm.argv import XCHG_GUEST_PATH, Boot, MachinePaths, machine_argv
from vmtest.vm.qmp import Monitor
from vmtest.machine.screen import Screen

DEFAULT_BOOT_TIMEOUT = 300.0


@dataclass(frozen=True)
class MachineNetwork:
    """How a machine is wired into a test network (see :mod:`vmtest.network`)."""

    qemu_args: tuple[str, ...]
    nic_ids: tuple[str, ...]  # QEMU device ids, for set_link
    setup_script: str  # run in the guest at boot: addresses, /etc/hosts
CONSOLE_TAIL = 20


class Machine(QemuControls, ScreenControls):
    """A QEMU virtual machine built from a :class:`MachineConfig`."""

    def __init__(
        self,
        name: str,
        config: MachineConfig | None = None,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        store: ImageStore | None = None,
        accel: str | None = None,
        keep_state: bool = False,
        network: MachineNetwork | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.config = config or MachineConfig()
        self.logger = get_logger(name)
        self.store = store or ImageStore()
        self._accel_request = accel
        self.accel: str | None = None
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else None
        self.keep_state = keep_state
        self.network = network
        self.before_start: Callable[[], None] | None = None  # e.g. bring up the VLAN switches
        self._serial_echo = True
        self.image: BootImage | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.monitor: Monitor | None = None
        self.console = None  # type: SerialConsole | None
        self.backdoor: Backdoor | None = None
        self.booted = False
        self._started_at = 0.0
        # True from start() until a deliberate stop (shutdown, crash, release):
        # a QEMU that exits while this is set died unexpectedly.
        self._should_run = False
        self._has_setup = False
        # Active polling conditions (shared with the driver), checked before each command.
        self.polling_conditions: list[polling.PollingCondition] = []
        self.guest = GuestOps(name, self.execute, self.console_tail)
        # Where screenshots go (the plugin points it at the test's output directory).
        self.output_dir = Path(output_dir) if output_dir else Settings.from_environment().output_dir / name
        self.screen = Screen(self)
        self.display = Display(name, self.execute, self.guest, self.console_tail)

    def __repr__(self) -> str:
        return f"<Machine {self.name} {'running' if self.is_running() else 'stopped'}>"

    # -- logging -----------------------------------------------------------

    def log(self, msg: str) -> None:
        """Log ``msg`` under this machine's name."""
        log(self.logger, f"{self.name}: {msg}")

    @contextmanager
    def nested(self, msg: str) -> Iterator[None]:
        """A timed, indented log section: ``with machine.nested("doing x"): ...``."""
        with nested(self.logger, f"{self.name}: {msg}"):
            yield

    @property
    def serial_echo(self) -> bool:
        """Whether serial-console lines are logged (``name # line``)."""
        return self._serial_echo

    @serial_echo.setter
    def serial_echo(self, on: bool) -> None:
        self._serial_echo = on
        if self.console is not None:
            self.console.echo = on

    def console_tail(self, n: int = CONSOLE_TAIL) -> list[str]:
        """The last ``n`` lines the serial console printed."""
        return self.console.tail(n) if self.console else []

    def _qemu_output(self) -> str:
        if self.state_dir is None:
            return ""
        try:
            text = MachinePaths(self.state_dir).qemu_log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-3000:]

    def _died(self, action: str, start: float) -> LaunchError:
        status = self.process.poll() if self.process else None
        out = self._qemu_output()
        message = f"QEMU exited with status {status}"
        message += f"; its output:\n{out}" if out else " and printed nothing"
        return LaunchError(self.name, action, message, time.monotonic() - start, self.console_tail())

    # -- lifecycle -----------------------------------------------------------

    def is_running(self) -> bool:
        """True while the QEMU process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Build the image if needed and launch QEMU; returns without waiting for the boot."""
        if self.is_running():
            return
        start = time.monotonic()
        self.booted = False
        with self.nested("starting"):
            if self.before_start is not None:
                self.before_start()
            self.image = self.store.get(self.config)
            if self.accel is None:
                self.accel = accel_mod.choose(
                    self.store.cache.root, lambda: Boot(self.image.kernel, self.image.initrd),
                    self.logger, self._accel_request,
                )
            if self.state_dir is None:
                self.state_dir = Path(tempfile.mkdtemp(prefix=f"vmtest-{self.name}-"))
            self.state_dir.mkdir(parents=True, exist_ok=True)
            paths = MachinePaths(self.state_dir)
            prepared = disks.prepare(self.name, self.config, paths, self.image, self.logger)
            paths.xchg.mkdir(exist_ok=True)
            if prepared.certs is not None:
                shutil.copyfile(prepared.certs, paths.xchg / guestsetup.CERTS_NAME)
            script = guestsetup.script(
                self.config, self.network.setup_script if self.network else "", prepared.grow_root,
                prepared.certs is not None,
            )
            setup = paths.xchg / guestsetup.SETUP_NAME
            if script:
                setup.write_text(script)
            else:
                setup.unlink(missing_ok=True)
            self._has_setup = bool(script)
            for sock in (paths.qmp, paths.shell, paths.serial, paths.agent):
                sock.unlink(missing_ok=True)
            paths.qemu_log.write_bytes(b"")
            argv = machine_argv(
                self.name, self.config, Boot(self.image.kernel, self.image.initrd, self.image.disk), paths,
                self.accel, network=self.network.qemu_args if self.network else (),
            )
            self.process = spawn(argv, logger=self.logger, stdout=paths.qemu_log)
            self._should_run = True
            self._started_at = time.monotonic()
            try:
                self._attach(paths, start)
            except BaseException:
                self.release()
                raise

    def _connect_unix(self, path: Path, start: float, timeout: float = 30.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise self._died(f"connecting to {path.name}", start)
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise LaunchError(
                        self.name, "starting QEMU", f"{path} did not appear within {timeout:.0f}s",
                        time.monotonic() - start,
                    ) from None
                time.sleep(0.02)

    def _attach(self, paths: MachinePaths, start: float) -> None:
        """Connect QMP, serial console and backdoor while QEMU is paused, then let it run."""
        self._connect_unix(paths.qmp, start).close()  # the socket exists and QEMU listens
        self.monitor = Monitor(paths.qmp)
        self.monitor.connect()
        self.console = SerialConsole(self.name, self.logger, paths.console_log)
        self.console.echo = self._serial_echo
        self.console.attach(self._connect_unix(paths.serial, start))
        self.backdoor = Backdoor(self.name, self._connect_unix(paths.shell, start), self.logger)
        self.monitor.command("cont")
        self.log(f"QEMU running (pid {self.process.pid}, {self.accel}), booting")

    def connect(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Start the machine if needed and wait until its backdoor shell answers."""
        if self._should_run and not self.is_running():
            self.booted = False
            raise self._died("connecting", time.monotonic())
        if self.booted:
            return
        self.start()
        assert self.backdoor is not None
        start = time.monotonic()
        with self.nested("waiting for the backdoor shell"):
            try:
                release = self.backdoor.wait_ready(timeout, self.is_running)
            except BackdoorClosed:
                raise self._died("booting", start) from None
            except BackdoorTimeout:
                raise Timeout(
                    self.name, "waiting for the backdoor shell", f"no shell within {timeout:.0f}s",
                    time.monotonic() - start, self.console_tail(),
                ) from None
        self.booted = True
        if self._has_setup:
            status, out = self.execute(
                "systemctl is-failed -q vmtest-setup.service || exit 0; "
                "journalctl -b -o cat -u vmtest-setup.service | tail -n 20; exit 1"
            )
            if status != 0:
                raise LaunchError(self.name, "running the per-boot set-up in the guest (network, mounts)",
                                  f"vmtest-setup.service failed:\n{out}", time.monotonic() - start,
                                  self.console_tail())
        self.log(f"shell up {time.monotonic() - self._started_at:.1f}s after launch (kernel {release})")

    def is_up(self) -> bool:
        """True when QEMU runs and the backdoor shell has answered."""
        return self.booted and self.is_running()

    # -- commands --------------------------------------------------------------

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: float = 900
    ) -> tuple[int, str]:
        """Run ``command`` (bash, ``set -euo pipefail``) in the guest; return (exit status, stdout).

        stdin is /dev/null; stderr goes to the serial console (and so the log).
        Output is byte-exact: undecodable bytes are kept as surrogates
        (``out.encode(errors="surrogateescape")`` gives the raw bytes). A command
        still running after ``timeout`` seconds is killed in the guest and
        raises :class:`Timeout`. ``check_return``/``check_output`` exist for
        NixOS compatibility: the status and output are always collected
        (``check_output=False`` returns "" as output).
        """
        self.connect()
        assert self.backdoor is not None
        if self.polling_conditions:
            polling.check_all(self.polling_conditions, f"{self.name}: {command!r}")
        start = time.monotonic()
        if not self.is_running():
            self.booted = False
            raise self._died(f"command {command!r}", start)
        try:
            result = self.backdoor.run(command, timeout)
        except BackdoorClosed:
            self.booted = False
            raise self._died(f"command {command!r}", start) from None
        except BackdoorTimeout as exc:
            raise Timeout(
                self.name, f"command {command!r}", f"the guest stopped answering: {exc}",
                time.monotonic() - start, self.console_tail(),
            ) from None
        if result.killed:
            raise Timeout(
                self.name, f"command {command!r}",
                f"still running after {timeout:g}s; it was killed in the guest. Output so far is lost; "
                "raise timeout= if it needs longer",
                result.elapsed, self.console_tail(),
            )
        self.logger.debug("%s: %r -> %d in %.3fs", self.name, command, result.status, result.elapsed)
        return result.status, result.output.decode(errors="surrogateescape") if check_output else ""

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise :class:`CommandFailed` unless all exit 0. Returns their joined stdout."""
        output = ""
        for command in commands:
            start = time.monotonic()
            with self.nested(f"must succeed: {command}"):
                status, out = self.execute(command, timeout=timeout or 900)
                if status != 0:
                    raise CommandFailed(self.name, command, status, out, time.monotonic() - start,
                                        console_tail=self.console_tail())
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise :class:`CommandFailed` if any exits 0. Returns their joined stdout."""
        output = ""
        for command in commands:
            start = time.monotonic()
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout or 900)
                if status == 0:
                    raise CommandFailed(self.name, command, status, out, time.monotonic() - start,
                                        expected="a non-zero exit status", console_tail=self.console_tail())
            output += out
        return output

    def _wait_for_status(self, command: str, succeed: bool, timeout: float) -> str:
        wanted = "succeed" if succeed else "fail"
        with self.nested(f"waiting for {command!r} to {wanted}"):
            last: dict[str, object] = {}

            def check(_: bool) -> bool:
                status, out = self.execute(command, timeout=timeout)
                last.update(status=status, output=out)
                return (status == 0) == succeed

            self.guest.wait_until(
                f"waiting for {command!r} to {wanted}", check, timeout,
                lambda: f"exit status {last.get('status')}, output {str(last.get('output'))[-500:]!r}",
            )
            return str(last["output"])

    def wait_until_succeeds(self, command: str, timeout: float = 900) -> str:
        """Repeat ``command`` until it exits 0 (pausing between tries); return its output."""
        return self._wait_for_status(command, True, timeout)

    def wait_until_fails(self, command: str, timeout: float = 900) -> str:
        """Repeat ``command`` until it exits non-zero; return its output."""
        return self._wait_for_status(command, False, timeout)

    def sleep(self, secs: float) -> None:
        """Wait ``secs`` seconds of host time (the guest keeps running)."""
        time.sleep(secs)

    # -- systemd -----------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run ``systemctl q`` (for ``user``: ``systemctl --user`` in their session)."""
        return self.guest.systemctl(q, user)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """All properties of ``unit`` (``systemctl show``) as a dict."""
        return self.guest.get_unit_info(unit, user)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        """One property of ``unit``."""
        return self.guest.get_unit_property(unit, property, user)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: float = 900) -> None:
        """Wait until ``unit`` is active; fail at once if it failed, or is inactive with no job pending
        (the message then includes ``systemctl status``)."""
        with self.nested(f"waiting for unit {unit}"):
            self.guest.wait_for_unit(unit, user, timeout)

    def require_unit_state(self, unit: str, require_state: str = "active", user: str | None = None) -> None:
        """Raise unless ``unit``'s ActiveState is ``require_state``."""
        self.guest.require_unit_state(unit, require_state, user)

    def start_job(self, unit: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl start unit``."""
        return self.systemctl(f"start {unit}", user)

    def stop_job(self, unit: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl stop unit``."""
        return self.systemctl(f"stop {unit}", user)

    # -- waiting -------------------------------------------------------------------

    def wait_for_file(self, path: str, timeout: float = 900) -> None:
        """Wait until ``path`` exists in the guest."""
        with self.nested(f"waiting for file {path}"):
            self.guest.wait_for_file(path, timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = 900) -> None:
        """Wait until something accepts TCP connections on ``addr:port`` (as seen from the guest)."""
        with self.nested(f"waiting for TCP port {port} on {addr}"):
            self.guest.wait_for_open_port(port, addr, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = 900) -> None:
        """Wait until nothing accepts TCP connections on ``addr:port``."""
        with self.nested(f"waiting for TCP port {port} on {addr} to close"):
            self.guest.wait_for_closed_port(port, addr, timeout)

    def wait_for_open_unix_socket(self, path: str, is_datagram: bool = False, timeout: float = 900) -> None:
        """Wait until a unix socket at ``path`` accepts connections."""
        with self.nested(f"waiting for unix socket {path}"):
            self.guest.wait_for_open_unix_socket(path, is_datagram, timeout)

    def wait_for_console_text(self, regex: str, timeout: float | None = None) -> str:
        """Wait for a serial-console line matching ``regex`` and return it.

        Lines printed before the call count too (since the previous match), so
        nothing is lost between calls.
        """
        import re

        if not self._should_run:
            self.start()
        assert self.console is not None
        start = time.monotonic()
        with self.nested(f"waiting for {regex!r} on the serial console"):
            match = self.console.wait_for(re.compile(regex), timeout)
        if match is None:
            raise Timeout(self.name, f"waiting for {regex!r} on the serial console",
                          "not printed" + (f" within {timeout:g}s" if timeout is not None else " before QEMU exited"),
                          time.monotonic() - start, self.console_tail())
        return match.string

    def send_console(self, text: str) -> None:
        """Write ``text`` to the serial console (ttyS0), as if typed there."""
        assert self.console is not None, "the machine is not running"
        self.console.write(text.encode())

    # -- files -----------------------------------------------------------------------

    @property
    def shared_dir(self) -> Path:
        """Host directory shared with the guest (9p) and mounted there at ``/tmp/xchg``."""
        if self.state_dir is None:
            raise MachineError(self.name, "shared_dir", "the machine has no state directory yet (start it first)")
        return MachinePaths(self.state_dir).xchg

    def _xchg_ready(self) -> bool:
        status, _ = self.execute(
            f"mountpoint -q {XCHG_GUEST_PATH} || mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none"
            f" xchg {XCHG_GUEST_PATH}"
        )
        return status == 0

    def copy_from_host(self, source: str | os.PathLike[str], target: str, via_shell: bool = False) -> None:
        """Copy a host file or directory tree (modes kept) to ``target`` in the guest.

        Goes through the shared directory (9p); ``via_shell=True``, or a guest
        without the share, sends it through the backdoor instead.
        """
        with self.nested(f"copying {source} from the host to {target}"):
            if via_shell or not self._xchg_ready():
                self.guest.copy_from_host_via_shell(source, target)
            else:
                self.guest.copy_from_host_via_share(source, target, self.shared_dir)

    def copy_from_vm(self, source: str, target_dir: str | os.PathLike[str] = "", via_shell: bool = False) -> Path:
        """Copy a guest file or directory tree (modes kept) into ``target_dir`` on the host
        (default: ``from-vm`` in the machine's state directory); returns the host path."""
        dest = Path(target_dir) if target_dir else (self.state_dir or Path.cwd()) / "from-vm"
        with self.nested(f"copying {source} from the guest to {dest}"):
            if via_shell or not self._xchg_ready():
                return self.guest.copy_from_vm_via_shell(source, dest)
            return self.guest.copy_from_vm_via_share(source, dest, self.shared_dir)

    # -- stopping --------------------------------------------------------------

    def wait_for_shutdown(self, timeout: float = 120) -> None:
        """Wait until QEMU exits (the guest powered off)."""
        start = time.monotonic()
        with self.nested("waiting for the machine to power off"):
            if self.process is None:
                return
            try:
                self.process.wait(timeout=timeout)
                self._should_run = False
            except subprocess.TimeoutExpired:
                raise Timeout(self.name, "waiting for power-off", f"QEMU still running after {timeout:.0f}s",
                              time.monotonic() - start, self.console_tail()) from None
        self._close_channels()

    def shutdown(self, timeout: float = 120) -> None:
        """Power the guest off cleanly (``systemctl poweroff``) and wait for QEMU to exit."""
        if not self.is_running():
            return
        with self.nested("shutting down"):
            self._should_run = False
            if self.booted and self.backdoor is not None:
                self.backdoor.send_only("systemctl poweroff")
            else:
                assert self.monitor is not None
                self.monitor.command("system_powerdown")
            self.booted = False
            try:
                self.wait_for_shutdown(timeout)
            finally:
                self.release()

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Reboot the guest (``systemctl reboot``) and wait until its shell answers again."""
        with self.nested("rebooting"):
            self.connect()
            assert self.backdoor is not None
            self.backdoor.send_only("systemctl reboot")
            self.booted = False
            self.connect(timeout)

    def crash(self) -> None:
        """Simulate a power loss: QEMU is killed at once (the disk keeps what was flushed)."""
        with self.nested("crashing"):
            self.booted = False
            self._should_run = False
            if self.process is not None:
                kill_group(self.process)
            self._close_channels()

    def _close_channels(self) -> None:
        for part in (self.backdoor, self.monitor):
            if part is not None:
                part.close()
        if self.console is not None:
            self.console.detach()
        self.backdoor = None
        self.monitor = None

    def release(self) -> None:
        """Kill QEMU if it still runs, close every channel, remove a temporary state dir.

        Safe to call any number of times.
        """
        self.booted = False
        self._should_run = False
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process)
        self._close_channels()
        if self._own_state_dir and not self.keep_state and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
