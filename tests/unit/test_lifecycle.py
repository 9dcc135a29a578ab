"""The machine lifecycle's state machine, one test per transition (fake QEMU process and channels)."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import pytest

from vmtest import ImageBuildError, LaunchError, MachineConfig, MachineError, Timeout
from vmtest.core.cache import Cache
from vmtest.image import BootImage
from vmtest.vm.argv import Launch
from vmtest.vm.backdoor import BackdoorClosed, BackdoorTimeout, Result
from vmtest.vm.channels import ChannelError, Channels, NetworkAttachment
from vmtest.vm.lifecycle import VM
from vmtest.vm.start import SETUP_CHECK, wait_for_boot
from vmtest.vm.state import ALLOWED, State


class FakeProcess:
    def __init__(self) -> None:
        self.pid = 4242
        self.status: int | None = None
        self.exited = threading.Event()

    def poll(self) -> int | None:
        return self.status

    def wait(self, timeout: float | None) -> int | None:
        self.exited.wait(timeout)
        return self.status

    def exit(self, status: int) -> None:
        self.status = status
        self.exited.set()

    def kill(self) -> None:
        if self.status is None:
            self.exit(-9)


class FakeMonitor:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.actions: list[object] = []
        self.resets = 0
        self.closed = False

    def command(self, name: str, /, **args: object) -> object:
        self.commands.append(name)
        if name == "set-action":
            self.actions.append(args.get("reboot"))
        return {}

    def human(self, command_line: str) -> str:
        return ""

    def wait_event(self, accept, timeout, keep=False):  # noqa: ANN001
        now = time.time()  # a reset happens at once (the reboot verb waits for it under TCG)
        event = {"event": "RESET", "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6) + 1}}
        return event if accept(event) else None

    def take_resets(self) -> int:
        resets, self.resets = self.resets, 0
        return resets

    def close(self) -> None:
        self.closed = True


class FakeConsole:
    echo = True

    def tail(self, n: int = 20, since: float | None = None) -> list[str]:
        return ["[    1.0] fake console line"]

    def write(self, data: bytes) -> None:
        pass

    def wait_for(self, pattern, timeout):  # noqa: ANN001
        return None

    def detach(self) -> None:
        pass


class FakeShell:
    def __init__(self, process: FakeProcess) -> None:
        self.process = process
        self.sent: list[str] = []
        self.ready_error: Exception | None = None
        self.closed = False
        self.readies = 0
        self.setup_done = False  # what the banner says (the set-up check runs when it does not)
        self.ran: list[str] = []

    def wait_ready(self, timeout: float, alive) -> str:  # noqa: ANN001
        self.readies += 1
        if self.ready_error is not None:
            raise self.ready_error
        return "6.1.0-fake"

    def run(self, command: str, timeout: float) -> Result:
        if self.process.status is not None:
            raise BackdoorClosed("the virtio console closed")
        self.ran.append(command)
        return Result(0, f"ran {command}".encode(), 0.001)

    def send_only(self, command: str) -> None:
        self.sent.append(command)
        if command == "systemctl poweroff":
            self.process.exit(0)

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    def __init__(self) -> None:
        self.spawned: list[list[str]] = []
        self.process: FakeProcess | None = None
        self.shell: FakeShell | None = None
        self.attach_error: str | None = None
        self.exit_at_attach: int | None = None

    def spawn(self, argv, output: Path, logger: logging.Logger, stdin: Path | None = None) -> FakeProcess:  # noqa: ANN001
        self.spawned.append(list(argv))
        output.write_text("qemu-system-x86_64: fake complaint\n")
        self.process = FakeProcess()
        return self.process

    def attach(self, name, paths, logger, alive, echo) -> Channels:  # noqa: ANN001
        assert self.process is not None
        if self.exit_at_attach is not None:
            self.process.exit(self.exit_at_attach)
        if self.attach_error:
            raise ChannelError(self.attach_error)
        self.shell = FakeShell(self.process)
        return Channels(FakeMonitor(), FakeConsole(), self.shell)


class FakeStart:
    name = "fake start"

    def __init__(self) -> None:
        self.resumed = 0

    def prepare(self, vm) -> Launch:  # noqa: ANN001
        return Launch(paused=True)

    def resume(self, vm, channels: Channels) -> None:  # noqa: ANN001
        self.resumed += 1
        channels.monitor.command("cont")

    def until_ready(self, vm, channels: Channels, timeout: float) -> str:  # noqa: ANN001
        return channels.shell.wait_ready(timeout, vm.is_running)

    def close(self) -> None:
        self.closed = True


class FakeStore:
    def __init__(self, root: Path, error: Exception | None = None) -> None:
        self.cache = Cache(root / "cache")
        self.error = error
        self.image = BootImage("k" * 32, root / "root.qcow2", root / "vmlinux", root / "initrd", "6.1", 1024)

    def get(self, config: MachineConfig) -> BootImage:
        if self.error is not None:
            raise self.error
        return self.image


@pytest.fixture(autouse=True)
def _state_dirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a given state directory makes a temporary one: here, in the test's tmp_path,
    not in the host's /tmp (where every run of these tests left eight)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


def make_vm(tmp_path: Path, backend: FakeBackend, store_error: Exception | None = None, **kwargs) -> VM:  # noqa: ANN003
    return VM(
        "m1",
        MachineConfig(),
        store=FakeStore(tmp_path, store_error),
        accel="tcg",  # type: ignore[arg-type]
        backend=backend,
        start_path=FakeStart(),
        **kwargs,
    )


def test_created_to_launching_to_running(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    assert vm.state is State.CREATED
    vm.launch()
    assert vm.state is State.RUNNING
    assert backend.spawned and "-S" in backend.spawned[0]
    assert vm.channels is not None and "cont" in vm.channels.monitor.commands  # type: ignore[attr-defined]
    vm.launch()  # idempotent while running
    assert len(backend.spawned) == 1
    vm.release()


def test_running_to_ready(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()  # launches too
    assert vm.state is State.READY and vm.kernel_release == "6.1.0-fake"
    assert vm.run("true", 5).output == b"ran true"
    vm.release()


def test_the_setup_check_runs_only_when_the_banner_does_not_say_the_setup_completed(tmp_path: Path) -> None:
    class Booting:
        name = "m1"
        launched_at = time.monotonic()

        def is_running(self) -> bool:
            return True

        def console_tail(self, n: int = 20, since: float | None = None) -> list[str]:
            return []

    for said, checks in ((False, [SETUP_CHECK]), (True, [])):
        shell = FakeShell(FakeProcess())
        shell.setup_done = said
        assert wait_for_boot(Booting(), Channels(FakeMonitor(), FakeConsole(), shell), 5) == "6.1.0-fake"  # type: ignore[arg-type]
        assert shell.ran == checks


def test_launch_failure_is_failed_with_argv_status_and_output(tmp_path: Path, backend: FakeBackend) -> None:
    backend.exit_at_attach = 1
    backend.attach_error = "QEMU exited before qmp.sock accepted a connection"
    vm = make_vm(tmp_path, backend)
    with pytest.raises(LaunchError) as info:
        vm.launch()
    assert vm.state is State.FAILED
    err = info.value
    assert err.status == 1 and err.argv == backend.spawned[0]
    assert "fake complaint" in err.output and "fake complaint" in str(err)
    assert "QEMU exited with status 1" in str(err) and "qemu-system-x86_64 -name m1" in str(err)


def test_preparation_failure_is_failed_and_remembered(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend, store_error=ImageBuildError("installing packages", "apt cannot find x"))
    with pytest.raises(ImageBuildError):
        vm.launch()
    assert vm.state is State.FAILED and not backend.spawned
    with pytest.raises(ImageBuildError):  # a later command does not silently retry
        vm.run("true", 5)


def test_ready_to_failed_when_qemu_dies(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    assert backend.process is not None
    backend.process.exit(-9)
    with pytest.raises(LaunchError, match="killed by SIGKILL") as info:
        vm.run("sleep 100", 5)
    assert vm.state is State.FAILED and info.value.status == -9
    with pytest.raises(MachineError, match="failed earlier"):
        vm.run("true", 5)


def test_failed_to_launching_on_explicit_launch(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    assert backend.process is not None
    backend.process.exit(-9)
    with pytest.raises(LaunchError):
        vm.check_alive("checking")
    vm.launch()
    assert vm.state is State.RUNNING and len(backend.spawned) == 2
    vm.release()


def test_ready_to_running_to_ready_on_reboot(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    vm.reboot()
    assert backend.shell is not None and backend.shell.sent == ["systemctl reboot"]
    assert vm.state is State.READY
    vm.release()


def test_guest_reboot_ends_qemu_unless_allowed_and_reboot_verb_restarts(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    monitor = vm.channels.monitor  # type: ignore[union-attr]
    assert monitor.actions == ["shutdown"]  # type: ignore[attr-defined]  # set before the guest runs
    assert monitor.commands.index("set-action") < monitor.commands.index("cont")  # type: ignore[attr-defined]
    vm.reboot()  # the verb's own reboot restarts the guest, then guest reboots end QEMU again
    assert monitor.actions == ["shutdown", "reset", "shutdown"]  # type: ignore[attr-defined]
    vm.set_allow_reboot(True)  # applied at once to the running QEMU
    vm.reboot()
    assert monitor.actions == ["shutdown", "reset", "shutdown", "reset"]  # type: ignore[attr-defined]
    shell = backend.shell
    assert shell is not None
    readies = shell.readies
    assert vm.run("true", 5).output == b"ran true" and shell.readies == readies  # no reset: no wait
    monitor.resets = 1  # type: ignore[attr-defined]  # the guest rebooted by itself (a RESET event)
    assert vm.run("true", 5).output == b"ran true"
    assert shell.readies == readies + 1 and vm.state is State.READY  # waited for the new shell first
    vm.release()
    vm.launch()  # kept for the next launch
    assert vm.channels is not None and vm.channels.monitor.actions == ["reset"]  # type: ignore[attr-defined]
    vm.release()


def test_ready_to_stopping_to_stopped_on_shutdown(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    vm.shutdown(timeout=5)
    assert vm.state is State.STOPPED and vm.channels is None
    assert backend.process is not None and backend.process.status == 0
    vm.shutdown()  # idempotent
    assert vm.state is State.STOPPED


def test_running_shutdown_uses_acpi_powerdown(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.launch()
    monitor = vm.channels.monitor  # type: ignore[union-attr]
    with pytest.raises(Timeout, match="still running"):
        vm.shutdown(timeout=0.1)  # the fake guest ignores ACPI: killed after the timeout
    assert "system_powerdown" in monitor.commands  # type: ignore[attr-defined]
    assert vm.state is State.STOPPED and backend.process is not None and backend.process.status == -9


def test_kill_then_lazy_restart(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    vm.kill()
    assert vm.state is State.STOPPED and not vm.is_running()
    assert vm.run("true", 5).status == 0  # a command boots the machine again, as in NixOS
    assert vm.state is State.READY and len(backend.spawned) == 2
    vm.release()


def test_stopped_on_purpose_while_a_command_waits(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    vm.kill()  # e.g. the global timeout
    err = vm.died("command 'sleep 100'", 0.0)
    assert not isinstance(err, LaunchError) and "stopped while this was running" in str(err)
    assert vm.state is State.STOPPED


def test_shell_that_never_answers_times_out(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.launch()
    assert backend.shell is not None
    backend.shell.ready_error = BackdoorTimeout("waiting for the backdoor shell")
    with pytest.raises(Timeout, match="no shell within 7s") as info:
        vm.wait_ready(timeout=7)
    assert info.value.console_tail == ["[    1.0] fake console line"]
    vm.release()


def test_interrupt_during_launch_kills_and_stops(tmp_path: Path, backend: FakeBackend) -> None:
    class Interrupting(FakeStart):
        def resume(self, vm, channels: Channels) -> None:  # noqa: ANN001
            raise KeyboardInterrupt

    vm = VM(
        "m1",
        MachineConfig(),
        store=FakeStore(tmp_path),
        accel="tcg",
        backend=backend,  # type: ignore[arg-type]
        start_path=Interrupting(),
    )
    with pytest.raises(KeyboardInterrupt):
        vm.launch()
    assert vm.state is State.STOPPED
    assert backend.process is not None and backend.process.status == -9


def test_release_is_idempotent_and_removes_its_own_state_dir(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.release()
    assert vm.state is State.CREATED  # never launched: nothing to stop
    vm.wait_ready()
    state_dir = vm.dirs.path
    assert state_dir is not None and state_dir.is_dir()
    vm.release()
    vm.release()
    assert vm.state is State.STOPPED and not state_dir.exists()


def test_network_is_brought_up_before_qemu_and_its_args_used(tmp_path: Path, backend: FakeBackend) -> None:
    calls: list[str] = []
    net = NetworkAttachment(
        qemu_args=("-netdev", "vde,id=vlan1,sock=/x"), nic_ids=("nic-vlan1",), ensure_up=lambda: calls.append("up")
    )
    vm = make_vm(tmp_path, backend, network=net)
    vm.launch()
    assert calls == ["up"] and "vde,id=vlan1,sock=/x" in backend.spawned[0]
    vm.release()


def test_unknown_transitions_are_bugs(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    with pytest.raises(AssertionError, match="created -> ready"):
        vm._to(State.READY)
    assert all(ALLOWED[s] for s in State)  # every state has a way out


def test_abort_while_ready_fails_the_waiting_call_and_every_later_one(tmp_path: Path, backend: FakeBackend) -> None:
    vm = make_vm(tmp_path, backend)
    vm.wait_ready()
    vm.abort("the global timeout of 60s expired")
    with pytest.raises(MachineError, match="stopped: the global timeout of 60s expired"):
        vm.run("sleep 100", 5)
    assert vm.state is State.FAILED
    with pytest.raises(MachineError, match="global timeout"):
        vm.launch()  # never started again by a later call


def test_abort_during_a_slow_launch_does_not_wait_for_it(tmp_path: Path, backend: FakeBackend) -> None:
    gate = threading.Event()

    class SlowStore(FakeStore):
        def get(self, config: MachineConfig) -> BootImage:
            gate.wait(10)  # an image build in progress
            return self.image

    vm = VM(
        "m1",
        MachineConfig(),
        store=SlowStore(tmp_path),
        accel="tcg",
        backend=backend,  # type: ignore[arg-type]
        start_path=FakeStart(),
    )
    errors: list[BaseException] = []
    launcher = threading.Thread(target=lambda: _catch(vm.launch, errors))
    launcher.start()
    while vm.state is not State.LAUNCHING:
        pass
    done = threading.Event()
    threading.Thread(target=lambda: (vm.abort("the global timeout expired"), done.set())).start()
    assert done.wait(2), "abort() waited for the launch"
    gate.set()
    launcher.join(10)
    assert len(errors) == 1 and "the global timeout expired" in str(errors[0])
    assert vm.state is State.FAILED and backend.process is not None and backend.process.status == -9


def _catch(fn, errors: list[BaseException]) -> None:  # noqa: ANN001
    try:
        fn()
    except BaseException as exc:  # recorded for the test
        errors.append(exc)
