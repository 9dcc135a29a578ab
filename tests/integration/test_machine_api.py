"""The Machine API against real booted guests (one shared guest where possible)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time

import pytest

from vmtest import CommandFailed, Machine, MachineConfig, Timeout, UnitFailed

CONFIG = MachineConfig(
    units={
        "broken.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo broken-unit-says-hi; exit 3'\n",
        "idle.service": "[Service]\nExecStart=/bin/sleep infinity\n",
    },
)


@pytest.fixture(scope="module")
def vm(vm_image_store, tmp_path_factory):
    machine = Machine("api", CONFIG, store=vm_image_store, state_dir=tmp_path_factory.mktemp("api-state"))
    yield machine
    machine.release()


def test_one_mib_binary_output_is_exact(vm):
    out = vm.succeed("head -c 1048576 /dev/urandom | tee /root/blob")
    raw = out.encode(errors="surrogateescape")
    assert len(raw) == 1 << 20
    assert hashlib.sha256(raw).hexdigest() == vm.succeed("sha256sum /root/blob").split()[0]


def test_fail_raises_on_success_and_succeed_on_failure(vm):
    assert vm.fail("echo nope; exit 4") == "nope\n"
    with pytest.raises(CommandFailed) as info:
        vm.fail("true")
    assert "a non-zero exit status" in str(info.value) and "api" in str(info.value)
    with pytest.raises(CommandFailed):
        vm.succeed("true", "false", "true")


def test_wait_for_unit_fails_at_once_on_a_failed_unit(vm):
    vm.execute("systemctl start broken.service")
    start = time.monotonic()
    with pytest.raises(UnitFailed) as info:
        vm.wait_for_unit("broken.service", timeout=300)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "broken.service" in message and "failed" in message and "status=3" in message


def test_wait_for_unit_inactive_without_jobs_fails(vm):
    with pytest.raises(UnitFailed) as info:
        vm.wait_for_unit("idle.service", timeout=300)
    assert "inactive and no job is pending" in str(info.value)
    vm.start_job("idle.service")
    vm.wait_for_unit("idle.service", timeout=60)
    vm.require_unit_state("idle.service", "active")
    assert vm.get_unit_property("idle.service", "ActiveState") == "active"
    vm.stop_job("idle.service")
    with pytest.raises(UnitFailed):
        vm.require_unit_state("idle.service", "active")


def test_wait_for_open_port_opened_later(vm):
    vm.succeed("(sleep 3; exec nc -l -p 4321 >/dev/null) >/dev/null 2>&1 &")
    vm.wait_for_open_port(4321, timeout=60)
    # the wait did not connect: the one-shot listener still takes the test's own first connection
    vm.succeed("nc -z -w 5 localhost 4321")
    vm.wait_for_closed_port(4321, timeout=30)
    vm.wait_for_closed_port(4322, timeout=10)
    with pytest.raises(Timeout) as info:
        vm.wait_for_open_port(4323, timeout=3)
    assert "4323" in str(info.value) and "gave up after 3s" in str(info.value)


def test_wait_for_open_unix_socket_opened_later(vm):
    # A one-shot stream listener: the wait must not use up its one connection.
    vm.succeed("(sleep 2; exec nc -lU /tmp/stream.sock > /tmp/got) >/dev/null 2>&1 &")
    vm.wait_for_open_unix_socket("/tmp/stream.sock", timeout=60)
    vm.succeed("echo hello-over-unix | nc -N -U /tmp/stream.sock")
    assert vm.wait_until_succeeds("cat /tmp/got", timeout=30) == "hello-over-unix\n"
    # A datagram socket is "open" once bound.
    vm.succeed("(sleep 2; exec nc -luU /tmp/dgram.sock > /dev/null) >/dev/null 2>&1 &")
    vm.wait_for_open_unix_socket("/tmp/dgram.sock", is_datagram=True, timeout=60)
    # A path where nothing listens (a plain file) never counts.
    vm.succeed("touch /tmp/not-a-socket")
    with pytest.raises(Timeout) as info:
        vm.wait_for_open_unix_socket("/tmp/not-a-socket", timeout=3)
    assert "/tmp/not-a-socket" in str(info.value)


def test_wait_for_file_and_until_succeeds(vm):
    vm.succeed("(sleep 2; touch /tmp/later) >/dev/null 2>&1 &")
    vm.wait_for_file("/tmp/later", timeout=60)
    vm.succeed("(sleep 2; echo ready > /tmp/flag) >/dev/null 2>&1 &")
    assert vm.wait_until_succeeds("cat /tmp/flag", timeout=60) == "ready\n"
    vm.wait_until_fails("test -e /tmp/nonexistent-file", timeout=10)


def test_wait_for_console_text_sees_earlier_lines(vm):
    vm.succeed("echo 'marker-before-the-call-1234' > /dev/ttyS0")
    time.sleep(1)
    line = vm.wait_for_console_text(r"marker-before-the-call-\d+", timeout=30)
    assert "marker-before-the-call-1234" in line
    with pytest.raises(Timeout):
        vm.wait_for_console_text(r"marker-before-the-call-\d+", timeout=2)  # already consumed


def test_stderr_is_captured_apart_from_stdout(vm):
    result = vm.execute("echo to-stdout; echo stderr-line-5678 >&2")
    assert (result, result.stderr) == ((0, "to-stdout\n"), "stderr-line-5678\n")
    assert "stderr-line-5678" not in vm.get_console_log()


def test_background_process_holding_stdout_does_not_hang(vm):
    start = time.monotonic()
    assert vm.succeed("sleep 600 & echo started") == "started\n"
    assert time.monotonic() - start < 20


def test_guest_timeout_kills_the_command(vm):
    with pytest.raises(Timeout) as info:
        vm.execute("sleep 600", timeout=2)
    assert "killed in the guest" in str(info.value)
    assert vm.succeed("echo still-alive") == "still-alive\n"


@pytest.mark.parametrize("via_shell", [False, True], ids=["9p-share", "shell"])
def test_copy_round_trip_of_a_tree(vm, tmp_path, via_shell):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "sub" / "run.sh").chmod(0o750)
    (src / "bin.dat").write_bytes(bytes(range(256)) * 10)
    vm.succeed("rm -rf /root/copied /root/deep")
    vm.copy_from_host(src, "/root/copied", via_shell=via_shell)
    assert vm.succeed("/root/copied/sub/run.sh") == "run\n"
    assert vm.succeed("stat -c %a /root/copied/sub/run.sh").strip() == "750"
    back = vm.copy_from_machine("/root/copied", tmp_path / "back", via_shell=via_shell)
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "bin.dat").read_bytes() == bytes(range(256)) * 10
    assert stat.S_IMODE(os.stat(back / "sub" / "run.sh").st_mode) == 0o750
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    vm.copy_from_host(single, "/root/deep/dir/single.txt", via_shell=via_shell)
    assert vm.succeed("cat /root/deep/dir/single.txt") == "one file\n"
    if not via_shell:
        # The share itself: a file the host puts there is visible in the guest and vice versa.
        (vm.shared_dir / "from-host").write_text("hi guest\n")
        assert vm.succeed("cat /tmp/xchg/from-host") == "hi guest\n"
        vm.succeed("echo hi host > /tmp/xchg/from-guest")
        assert (vm.shared_dir / "from-guest").read_text() == "hi host\n"


def test_monitor_and_qmp(vm):
    assert "running" in vm.send_monitor_command("info status")


def test_reboot_keeps_disk_state_and_empties_tmp(vm):
    vm.succeed("echo persisted > /root/state-file && touch /tmp/before-reboot && sync")
    vm.reboot()
    vm.succeed("touch /tmp/first-command")  # the boot is still going on
    assert vm.succeed("cat /root/state-file") == "persisted\n"
    assert float(vm.succeed("cut -d' ' -f1 /proc/uptime")) < 120
    vm.fail("test -e /tmp/before-reboot")  # /tmp starts empty, as on Debian
    vm.execute("systemctl is-system-running --wait", timeout=300)  # systemd-tmpfiles-setup has run
    vm.succeed("test -e /tmp/first-command")  # and did not delete what the test wrote meanwhile


def test_crash_then_start_keeps_disk(vm):
    vm.succeed("echo survived > /root/crash-file && sync")
    vm.crash()
    assert not vm.is_running()
    vm.start()
    assert vm.succeed("cat /root/crash-file") == "survived\n"


def test_commands_on_two_machines_from_two_threads(vm, vm_factory):
    other = vm_factory("api2", CONFIG)
    other.connect()
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(machine: Machine) -> None:
        try:
            for i in range(20):
                assert machine.succeed(f"echo {machine.name}-{i}") == f"{machine.name}-{i}\n"
            results[machine.name] = machine.succeed("hostname").strip()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in (vm, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert results == {"api": "api", "api2": "api2"}


def test_send_console_reaches_the_serial_port(vm):
    # The reader has the port open before the line is sent (bytes reaching a closed tty are dropped): a
    # fixed second was not enough for a cold boot's first commands (--vm-snapshots=off under load).
    vm.succeed("(exec 3</dev/ttyS0; : > /tmp/serial-open; head -n 1 <&3 > /tmp/from-serial) >/dev/null 2>&1 &")
    vm.wait_for_file("/tmp/serial-open", timeout=30)
    vm.send_console("typed-on-the-serial-line\n")
    vm.wait_for_file("/tmp/from-serial", timeout=30)
    vm.wait_until_succeeds("grep -q typed-on-the-serial-line /tmp/from-serial", timeout=30)


def test_wait_for_qmp_event(vm):
    vm.connect()
    vm.send_monitor_command("stop")
    event = vm.wait_for_qmp_event(lambda e: e["event"] == "STOP", timeout=30)
    assert event["event"] == "STOP"
    vm.send_monitor_command("cont")
    vm.wait_for_qmp_event(lambda e: e["event"] == "RESUME", timeout=30)
    assert vm.is_up()
    assert vm.succeed("echo after-resume") == "after-resume\n"
    with pytest.raises(Timeout):
        vm.wait_for_qmp_event(lambda e: e["event"] == "NEVER", timeout=1)
