"""Build the default image, boot it under QEMU and talk to it (real guest)."""

from __future__ import annotations

import os
import shlex
import signal

import pytest

from vmtest import CommandFailed, LaunchError, MachineConfig, State


def test_boot_uname_and_exit_status(vm_factory, store):
    vm = vm_factory("vm1", MachineConfig())
    status, out = vm.execute("uname -r")
    assert status == 0
    kernel = store.kernel()
    assert out.strip() == kernel.release
    status, out = vm.execute("false")
    assert (status, out) == (1, "")
    assert vm.execute("exit 7")[0] == 7
    assert vm.succeed("hostname").strip() == "vm1"
    # The whole boot: no unit fails, and nothing from the image's blacklist got loaded on the way
    # (udev loads CPU-feature modules for -cpu max), while an explicit modprobe still works.
    vm.execute("systemctl is-system-running --wait", timeout=300)
    assert vm.succeed("systemctl --failed --no-legend --plain") == ""
    loaded = {line.split()[0] for line in vm.succeed("cat /proc/modules").splitlines()}
    assert not loaded & {"floppy", "pcspkr", "aesni_intel", "powernow_k8", "i2c_piix4", "kvm", "ata_piix", "libata"}
    vm.succeed("modprobe aesni_intel && grep -q '^aesni_intel ' /proc/modules")
    # /sys and the BPF file system come from stage 1, mounted as systemd mounts them
    mounts = vm.succeed(*(f"findmnt -n -o TARGET,FSTYPE,OPTIONS --mountpoint {m}" for m in ("/sys", "/sys/fs/bpf")))
    mounts = mounts.splitlines()
    (sys_target, sys_type, sys_options), (bpf_target, bpf_type, bpf_options) = (line.split() for line in mounts)
    assert (sys_target, sys_type, bpf_target, bpf_type) == ("/sys", "sysfs", "/sys/fs/bpf", "bpf")
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(sys_options.split(","))
    assert {"rw", "nosuid", "nodev", "noexec", "mode=700"} <= set(bpf_options.split(","))
    # the early units the first command does not need ran after the backdoor's start, at the lowest priority
    for unit in ("sys-kernel-debug.mount", "systemd-udev-trigger.service", "systemd-modules-load.service"):
        show = dict(
            line.split("=", 1) for line in vm.succeed(f"systemctl show -p After,Nice,ActiveState {unit}").splitlines()
        )
        assert "vmtest-backdoor.service" in show["After"].split(), (unit, show)
        assert (show["Nice"], show["ActiveState"]) == ("19", "active"), (unit, show)
    vm.shutdown()
    assert not vm.is_running()


def test_output_framing_in_guest(vm_factory):
    vm = vm_factory("frames", MachineConfig())
    assert vm.succeed("printf 'no newline'") == "no newline"
    # Text that looks like a reply header must come back as plain output.
    fake = "\x02vmtest-out abc 0 0 raw\n"
    assert vm.succeed("printf '\\002vmtest-out abc 0 0 raw\\n'") == fake
    # Binary output (NUL bytes) is transferred exactly.
    status, out = vm.execute("printf 'a\\0b\\0'")
    assert (status, out) == (0, "a\0b\0")
    # set -euo pipefail applies: a failing command in the middle stops it.
    assert vm.execute("false; echo not reached") == (1, "")
    with pytest.raises(CommandFailed) as info:
        vm.succeed("echo some output; exit 3")
    message = str(info.value)
    assert "frames" in message and "exit 3" in message and "exit status 3" in message and "some output" in message


def test_config_files_and_units_in_guest(vm_factory, nonce):
    config = MachineConfig(
        files={
            "/etc/vmtest-nonce": nonce,
            "/usr/local/bin/hello": __import__("vmtest").File("#!/bin/sh\necho hi\n", 0o755),
        },
        units={
            "hello.service": "[Service]\nType=oneshot\nExecStart=/usr/local/bin/hello\nRemainAfterExit=yes\n"
            "[Install]\nWantedBy=multi-user.target\n"
        },
        build_commands=["echo built > /etc/built-by-vmtest"],
    )
    # (an image of its own every run: a booted snapshot of it would never be restored)
    vm = vm_factory("files", config, snapshots=False)
    assert vm.succeed("cat /etc/vmtest-nonce") == nonce
    assert vm.succeed("stat -c %a /usr/local/bin/hello").strip() == "755"
    assert vm.succeed("cat /etc/built-by-vmtest") == "built\n"
    vm.succeed("systemctl is-enabled hello.service")
    # The base image is never written: a second machine from the same image sees a pristine disk.
    vm.succeed("echo dirty > /root/state && sync")
    other = vm_factory("files2", config, snapshots=False)
    other.fail("test -e /root/state")


def test_qemu_death_fails_fast_with_its_output(vm_factory):
    vm = vm_factory("doomed", MachineConfig())
    vm.connect()
    os.kill(vm.pid, signal.SIGKILL)

    with pytest.raises(LaunchError) as info:
        vm.succeed("sleep 100")
    assert "doomed" in str(info.value) and "QEMU was killed by SIGKILL" in str(info.value)
    assert vm.state is State.FAILED
    assert info.value.elapsed is not None and info.value.elapsed < 30


def test_qemu_failing_at_launch_names_argv_and_its_message(vm_factory):
    vm = vm_factory("badopt", MachineConfig(virtualisation={"qemu": {"options": ["-no-such-option"]}}))
    with pytest.raises(LaunchError) as info:
        vm.start()
    err = info.value
    assert "-no-such-option" in err.argv and err.status == 1
    assert "invalid option" in err.output  # QEMU's own message
    text = str(err)
    assert "badopt" in text and "QEMU exited with status 1" in text
    assert "invalid option" in text and "-no-such-option" in text
    assert vm.state is State.FAILED and not vm.is_running()


def test_machine_without_graphics_boots(vm_factory):
    vm = vm_factory("nographics", MachineConfig(virtualisation={"graphics": False, "memory_size": 512}))
    assert "ttyS0" in vm.succeed("cat /proc/cmdline")
    total_kib = int(vm.succeed("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert 400_000 < total_kib <= 512 * 1024


SKIPPABLE = "systemd-debug-generator systemd-rc-local-generator systemd-fstab-generator systemd-sysv-generator"
STAGE1_LINE = "dmesg | grep 'vmtest-stage1: modules'"
# Each generator stage 1 may skip, run by hand into an empty directory: what it generates (a line per file).
RUN_GENERATORS = (
    "for g in debug rc-local fstab sysv; do d=$(mktemp -d);"
    " /lib/systemd/system-generators/systemd-$g-generator $d $d $d;"
    ' (cd "$d" && find . -mindepth 1 | sort | sed "s|^[.]|$g |"); done'
)
LEGACY_SCRIPT = (
    "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: legacy\n# Required-Start:\n# Required-Stop:\n"
    "# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n### END INIT INFO\n"
    'case "$1" in start) touch /run/legacy-started ;; esac\n'
)


def test_generators_skipped_by_stage1_had_nothing_to_generate_and_run_again_when_they_have(vm_factory):
    """Stage 1 skips systemd's debug, rc-local, fstab and SysV generators for a boot in which they would generate
    nothing (vmtest/image/guest/init): each one, run by hand in the booted guest, generates nothing but the
    remount service stage 1 put in place of the fstab generator's; the masks are gone once the boot is done, so
    that a daemon-reload runs them; after a reboot with an fstab entry, an rc.local and a SysV script they run at
    boot and what they generate starts; a debug parameter on the command line keeps the debug generator.
    systemd loads no kernel module itself on the way (stage 1 has loaded those it wants)."""
    vm = vm_factory("gens", MachineConfig())
    vm.wait_for_unit("multi-user.target")
    assert f"skipped generators: {SKIPPABLE};" in vm.succeed(STAGE1_LINE)
    assert "systemd[1]: Inserted module" not in vm.succeed("dmesg")
    generated = vm.succeed(RUN_GENERATORS).splitlines()
    assert generated == ["fstab /local-fs.target.wants", "fstab /local-fs.target.wants/systemd-remount-fs.service"]
    assert "systemd-remount-fs.service" in vm.succeed("systemctl show -P Wants local-fs.target").split()
    assert vm.succeed("systemctl show -P ActiveState systemd-remount-fs.service").strip() == "active"
    vm.succeed("test ! -e /run/systemd/system-generators")

    vm.succeed(
        "mkdir /mnt/fstabtest && echo 'tmpfs /mnt/fstabtest tmpfs defaults 0 0' >> /etc/fstab",
        "printf '#!/bin/sh\\ntouch /run/rc-local-ran\\n' > /etc/rc.local && chmod +x /etc/rc.local",
        f"printf %s {shlex.quote(LEGACY_SCRIPT)} > /etc/init.d/legacy && chmod +x /etc/init.d/legacy",
        "ln -s ../init.d/legacy /etc/rc3.d/S01legacy",
        "systemctl daemon-reload",
    )
    assert (
        vm.succeed("systemctl show -P FragmentPath legacy.service").strip()
        == "/run/systemd/generator.late/legacy.service"
    )
    assert "rc-local.service" in vm.succeed("systemctl show -P Wants multi-user.target").split()
    vm.succeed("systemctl start mnt-fstabtest.mount", "findmnt -n -o FSTYPE /mnt/fstabtest | grep -qx tmpfs")

    vm.reboot()
    vm.wait_for_unit("multi-user.target")
    assert "skipped generators: systemd-debug-generator;" in vm.succeed(STAGE1_LINE)
    vm.succeed("findmnt /mnt/fstabtest", "test -e /run/rc-local-ran", "test -e /run/legacy-started")

    debug = vm_factory("gensdebug", MachineConfig(kernel_params=["systemd.mask=getty@tty6.service"]), snapshots=False)
    skipped = SKIPPABLE.replace("systemd-debug-generator ", "")
    assert f"skipped generators: {skipped};" in debug.succeed(STAGE1_LINE)
    assert debug.execute("systemctl is-enabled getty@tty6.service", check_return=False)[1].strip() == "masked-runtime"
