"""The machine lifecycle: one owner of the QEMU process, its channels and its state.

The states and their transitions are :mod:`vmtest.vm.state`. How a launch
reaches READY is the job of a :class:`StartPath` (a cold boot,
:mod:`vmtest.vm.start`; a booted snapshot's save or restore,
:mod:`vmtest.vm.restore`; a foreign image's boot); what a launch prepares
before QEMU (image, accelerator, command line) is the job of the machine's
:class:`~vmtest.vm.launchers.Launcher`; everything else — preparing the state directory,
spawning QEMU, attaching QMP, the serial console and the backdoor, noticing
QEMU's death, stopping idempotently — happens here, once. QEMU and the
channels are reached through a :class:`Backend`, so the state machine is
unit-testable with a fake process and fake channels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import MachineError, VmtestError
from vmtest.core.log import get_logger, log, nested
from vmtest.image import BootImage, ImageStore
from vmtest.vm import failures, translations
from vmtest.vm.agent import GuestAgent
from vmtest.vm.backdoor import BackdoorClosed, BackdoorTimeout, GuestCrashed, Result
from vmtest.vm.channels import (
    CONSOLE_TAIL,
    Backend,
    ChannelError,
    Channels,
    Console,
    Monitor,
    NetworkAttachment,
    Process,
)
from vmtest.vm.launchers import launcher_for
from vmtest.vm.paths import MachinePaths, StateDir
from vmtest.vm.reboots import GuestReboots
from vmtest.vm.restore import Choice, RestoreFailed
from vmtest.vm.start import StartPath
from vmtest.vm.state import ALIVE, ALLOWED, State

DEFAULT_BOOT_TIMEOUT = 300.0
EXIT_GRACE = 5.0  # how long a QEMU whose channels closed may take to exit


class VM:
    """One machine's QEMU, from launch to stop. Thread-safe; every stop is idempotent."""

    def __init__(
        self,
        name: str,
        config: MachineConfig,
        *,
        store: ImageStore,
        accel: str | None = None,
        state_dir: Path | None = None,
        keep_state: bool = False,
        kept_dir: Path | None = None,
        network: NetworkAttachment | None = None,
        backend: Backend | None = None,
        start_path: StartPath | None = None,
        snapshots: Choice | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.logger = logger or get_logger(name)
        self.network = network or NetworkAttachment()
        self.launcher = launcher_for(config, accel, kept_dir)  # vmtest's own image, or a foreign one
        self.backend: Backend = backend or self.launcher.backend()
        self.starts = self.launcher.start_paths(start_path, snapshots)
        self.reboots = GuestReboots()
        self.dirs = StateDir(name, state_dir, keep_state)
        self.efi_vars: Path | None = None  # a UEFI machine's variable store (vmtest.vm.efivars)
        self.state = State.CREATED
        self.failure: VmtestError | None = None
        self.image: BootImage | None = None
        self.accel: str | None = None
        self.argv: list[str] = []
        self.stdin: Path | None = None  # what the launch's QEMU reads on its stdin (a restore: its saved state)
        self.process: Process | None = None
        self.channels: Channels | None = None
        self._console: Console | None = None  # the last launch's console: its tail outlives QEMU
        self.launched_at = 0.0
        self.kernel_release: str | None = None
        self.serial_echo = True
        self.aborted: str | None = None  # why abort() stopped the machine for good
        self._lock = threading.RLock()  # state transitions
        self._ready_lock = threading.Lock()  # one thread waits for the shell, the others wait for it

    def __repr__(self) -> str:
        return f"<VM {self.name} {self.state.value}>"

    # -- logging -------------------------------------------------------------------------

    def log(self, msg: str, level: int = logging.INFO) -> None:
        log(self.logger, f"{self.name}: {msg}", level=level)

    @contextmanager
    def nested(self, msg: str) -> Iterator[None]:
        with nested(self.logger, f"{self.name}: {msg}"):
            yield

    # -- state ---------------------------------------------------------------------------

    def _to(self, new: State) -> None:
        if new not in ALLOWED[self.state]:
            raise AssertionError(f"{self.name}: no transition {self.state.value} -> {new.value}")
        self.logger.debug("%s: %s -> %s", self.name, self.state.value, new.value)
        self.state = new

    @property
    def paths(self) -> MachinePaths:
        return self.dirs.paths()

    @property
    def start_path(self) -> StartPath:
        """The start path of the current (or last) launch."""
        return self.starts.current

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        """True while the QEMU process is alive."""
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        return self.state is State.READY and self.is_running()

    def console_tail(self, n: int = CONSOLE_TAIL, since: float | None = None) -> list[str]:
        return self._console.tail(n, since) if self._console is not None else []

    def qemu_output(self, limit: int = 3000) -> str:
        """The end of what QEMU itself printed (its stdout+stderr)."""
        return self.paths.qemu_output(limit) if self.dirs.path is not None else ""

    # -- errors ----------------------------------------------------------------------------

    def died(self, action: str, start: float) -> MachineError:
        """QEMU exited when it should have been running: FAILED, and the error saying so (or, when it was
        stopped on purpose meanwhile, e.g. by shutdown or the global timeout, the error saying that)."""
        # A closed channel comes a moment before QEMU can be reaped: give it that moment.
        status = self.process.wait(EXIT_GRACE) if self.process is not None else None
        with self._lock:
            aborted, stopped = self.aborted, self.state is State.STOPPED
        if aborted is None and stopped:
            return failures.stopped_meanwhile(self, action, start)
        error = failures.death(self, action, start, status, aborted)
        with self._lock:
            self._fail(error)
            self._close_channels()
        return error

    def _fail(self, error: VmtestError) -> None:
        """FAILED (if not yet), keeping ``error`` for later calls."""
        if self.state is not State.FAILED:
            self._to(State.FAILED)
        self.failure = error

    def check_alive(self, action: str) -> None:
        """Raise if QEMU died (FAILED) when it should be running."""
        if self.state is State.FAILED:
            raise failures.failed_earlier(self, self.failure, action)
        if self.state in (State.RUNNING, State.READY) and not self.is_running():
            raise self.died(action, time.monotonic())

    # -- launching -------------------------------------------------------------------------

    def launch(self) -> None:
        """Prepare, spawn QEMU and attach its channels; the guest runs when this returns.

        Nothing happens if QEMU is already up; from CREATED, STOPPED or FAILED it starts again.
        """
        with self._lock:
            if self.state in (State.RUNNING, State.READY):
                self.check_alive("starting")
                return
            if self.state is State.STOPPING:
                raise MachineError(self.name, "starting", "the machine is still powering off")
            start = time.monotonic()
            if self.aborted is not None:
                raise failures.stopped(self, "starting", start, self.aborted)
            self._to(State.LAUNCHING)
            self.failure = None
            try:
                with self.nested("starting"):
                    self.starts.launch(self, start)  # falls back to a cold boot
                if self.aborted is not None:  # the abort came while this launch held the lock
                    raise failures.stopped(self, "starting", start, self.aborted)
            except BaseException as exc:
                self.abort_launch()
                if isinstance(exc, VmtestError):
                    self._fail(exc)  # FAILED, keeping why
                else:
                    self._to(State.STOPPED)  # e.g. Ctrl-C
                raise
            self._to(State.RUNNING)

    def launch_once(self, start: float) -> None:
        """One launch of QEMU, up to a running guest (:meth:`StartPaths.launch` falls back to a second)."""
        self.argv = self.launcher.prepare(self)  # the network's switches are up; sets self.stdin
        paths = self.paths
        self.process = self.backend.spawn(self.argv, paths.qemu_log, self.logger, self.stdin)
        self.launched_at = time.monotonic()
        try:
            self.channels = self.backend.attach(self.name, paths, self.logger, self.is_running, self.serial_echo)
        except ChannelError as exc:
            raise failures.attach_failed(self, start, self.process.poll(), exc) from None
        self._console = self.channels.console
        try:
            self.reboots.apply(self.channels.monitor)
        except Exception as exc:  # QMP breaks when QEMU exits at once (it read a restore's state and refused it)
            status = self.process.wait(EXIT_GRACE)
            if status is None:
                raise
            raise failures.attach_failed(self, start, status, ChannelError(str(exc))) from None
        self.start_path.resume(self, self.channels)
        self.log(f"QEMU running (pid {self.process.pid}, {self.accel})")

    def _follow_guest_reboot(self) -> None:
        """With reboots allowed, a guest that rebooted by itself since the last command is waited for."""
        with self._lock:
            if self.state is State.READY and self.reboots.noticed(self._live_monitor()):
                self.log("the guest rebooted by itself: waiting for its shell again")
                self._to(State.RUNNING)

    def set_allow_reboot(self, allow: bool) -> None:
        """Allow (or not) reboots the guest starts itself, now if QEMU runs, and for every later launch."""
        with self._lock:
            self.reboots.allow(allow, self._live_monitor())

    def _live_monitor(self) -> Monitor | None:
        return self.channels.monitor if self.channels is not None and self.is_running() else None

    def abort_launch(self) -> None:
        """Kill this launch's QEMU, close its channels and its start path; the state is the caller's."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._close_channels()
        self.start_path.close()

    def wait_ready(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Launch if needed and wait until the guest's backdoor shell answers (READY)."""
        if self.is_ready():
            return
        with self._ready_lock:
            if self.state is State.STOPPING:
                raise MachineError(self.name, "waiting for the shell", "the machine is powering off")
            self._launched("waiting for the shell")  # raises if it FAILED (earlier, or now)
            if self.state is State.READY:
                return
            start = time.monotonic()
            with self.nested("waiting for the backdoor shell"):
                while (rebooted := self._until_ready(start, timeout)) is None:
                    self.launch()  # the snapshot could not be restored: boot instead
            with self._lock:
                self._to(State.READY)
            if rebooted:
                self.log(f"shell up {time.monotonic() - start:.1f}s after the reboot (kernel {self.kernel_release})")
            else:
                self.log(
                    f"shell up {time.monotonic() - self.launched_at:.1f}s after launch "
                    f"({self.start_path.name}; kernel {self.kernel_release})"
                )

    def _until_ready(self, start: float, timeout: float) -> bool | None:
        """One wait for the shell of the current launch: whether it was a reboot's; None when the machine
        must be launched again."""
        channels = self.channels
        assert channels is not None
        try:
            rebooted = self.reboots.take_pending()
            wait = self.launcher.after_reboot if rebooted else self.start_path.until_ready
            self.kernel_release = wait(self, channels, timeout)
            return rebooted
        except RestoreFailed as exc:
            with self._lock:
                self.starts.fall_back(self, exc)
                self._to(State.STOPPED)
            return None
        except BackdoorClosed:
            raise self.died("booting", start) from None
        except GuestCrashed as exc:
            raise failures.boot_stopped(self, start, str(exc)) from None
        except BackdoorTimeout:
            raise failures.no_shell(self, start, timeout) from None
        except MachineError as exc:
            with self._lock:
                self._fail(exc)
                self.abort_launch()
            raise

    # -- the channels, for the parts of a Machine ----------------------------------------------

    def monitor(self) -> Monitor:
        """QMP; launches the machine if it is not running."""
        return self._launched("using the QEMU monitor").monitor

    def console(self) -> Console:
        """The serial console; launches the machine if it is not running."""
        return self._launched("using the serial console").console

    def agent(self) -> GuestAgent:
        """The guest agent over the connection held since the launch (a new connection per call when there is
        none); launches the machine if it is not running."""
        channels = self._launched("talking to the guest agent")
        return channels.agent or GuestAgent(self.paths.agent)

    def _launched(self, action: str) -> Channels:
        if self.state in (State.CREATED, State.STOPPED):
            self.launch()
        self.check_alive(action)
        if self.channels is None:
            raise MachineError(self.name, action, f"the machine is {self.state.value}")
        return self.channels

    def run(self, command: str, timeout: float) -> Result:
        """Run ``command`` through the backdoor shell (waiting for the boot if needed)."""
        self._follow_guest_reboot()
        self.wait_ready()
        channels = self.channels
        assert channels is not None
        start = time.monotonic()
        try:
            return channels.shell.run(command, timeout)
        except BackdoorClosed:
            raise self.died(f"command {command!r}", start) from None
        except BackdoorTimeout as exc:
            raise failures.not_answering(self, command, start, exc) from None

    # -- stopping ----------------------------------------------------------------------------

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """``systemctl reboot`` in the guest, then wait until its shell answers again."""
        self.wait_ready()
        start, asked = time.monotonic(), time.time()
        with self._lock:
            self.reboots.ask(self.channels)
            self._to(State.RUNNING)
            monitor = self.channels.monitor if self.accel == "tcg" and self.channels else None
        # QEMU 7.2 keeps TCG's translations across a reset (vmtest.vm.translations): empty them
        gdbstub = self.paths.sockets / translations.SOCKET
        if monitor is not None and translations.after_reset(monitor, gdbstub, asked, self.is_running, self.logger):
            self.log("translated code emptied after the reset", level=logging.DEBUG)
        self.wait_ready(max(1.0, timeout - (time.monotonic() - start)))
        with self._lock:
            self.reboots.finished(self._live_monitor())

    def shutdown(self, timeout: float = 120) -> None:
        """Power the guest off cleanly and wait for QEMU to exit; a no-op when it is not running."""
        with self._lock:
            if not self.is_running() or self.state not in (State.RUNNING, State.READY):
                return
            assert self.channels is not None
            if self.state is State.READY:
                self.channels.shell.send_only("systemctl poweroff")
            else:
                self.channels.monitor.command("system_powerdown")
            self._to(State.STOPPING)
        self.wait_for_exit(timeout)

    def wait_for_exit(self, timeout: float = 120) -> None:
        """Wait until QEMU exits (the guest powered off); then STOPPED. On timeout QEMU is killed."""
        if self.process is None:
            return
        start = time.monotonic()
        status = self.process.wait(timeout)
        with self._lock:
            if status is None:
                self._kill()
                raise failures.not_powered_off(self, start, timeout)
            if self.state in ALIVE:
                self._to(State.STOPPED)
            self._close_channels()

    def abort(self, reason: str) -> None:
        """Stop this machine for good, from any thread, without waiting for a launch in progress (the
        global timeout): QEMU is killed now; every call waiting on the machine, and every later one,
        fails naming ``reason``; an image build in progress finishes, then its launch fails."""
        self.aborted = reason
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()

    def kill(self) -> None:
        """Kill QEMU at once (a power loss: the disk keeps what was flushed). STOPPED."""
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        self.abort_launch()
        if self.state is not State.CREATED or self.process is not None:
            self._to(State.STOPPED)

    def _close_channels(self) -> None:
        if self.channels is not None:
            self.channels.close()
            self.channels = None

    def let_go(self) -> None:
        """This run no longer owns QEMU and the state directory: the channels close, QEMU runs on (kept by
        ``--vm-keep-on-failure``) and :meth:`release` leaves both alone."""
        with self._lock:
            self._close_channels()
            self.process = None
            self.dirs.let_go()

    def release(self) -> None:
        """Kill QEMU if it runs, close every channel, remove a temporary state directory. Idempotent."""
        with self._lock:
            self._kill()
            self.dirs.remove()
