"""systemd user units: systemctl(user=...), wait_for_unit(user=...) against a real user manager."""

from __future__ import annotations

import pytest

from vmtest import File, MachineConfig, UnitFailed

USER_UNITS = MachineConfig(
    packages=["dbus-user-session", "libpam-systemd"],
    files={
        "/etc/skel/.config/systemd/user/hello.service": File(
            "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=default.target\n"
        ),
        "/etc/skel/.config/systemd/user/broken.service": File(
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo user-unit-broke; exit 7'\n"
        ),
    },
    build_commands=[
        "useradd -m -s /bin/bash alice",
        "mkdir -p /home/alice/.config/systemd/user/default.target.wants",
        "ln -s ../hello.service /home/alice/.config/systemd/user/default.target.wants/hello.service",
        "chown -R alice:alice /home/alice",
        # linger: alice's user manager starts at boot, without a login
        "mkdir -p /var/lib/systemd/linger && touch /var/lib/systemd/linger/alice",
    ],
)


def test_user_units(vm_factory) -> None:
    vm = vm_factory("users", USER_UNITS)
    # (a user manager starts slowly under TCG on a busy host: generous limits)
    vm.wait_for_unit("user@1000.service", timeout=300)
    vm.wait_for_unit("hello.service", user="alice", timeout=300)
    status, out = vm.systemctl("is-active hello.service", user="alice")
    assert (status, out.strip()) == (0, "active")
    assert vm.get_unit_property("hello.service", "ActiveState", user="alice") == "active"
    vm.require_unit_state("hello.service", "active", user="alice")
    # the same unit name is unknown to the system manager
    assert vm.systemctl("is-active hello.service")[0] != 0
    vm.systemctl("start broken.service", user="alice")
    with pytest.raises(UnitFailed) as info:
        vm.wait_for_unit("broken.service", user="alice", timeout=60)
    assert "broken.service" in str(info.value) and "failed" in str(info.value)
    vm.stop_job("hello.service", user="alice")
    assert vm.get_unit_property("hello.service", "ActiveState", user="alice") == "inactive"
