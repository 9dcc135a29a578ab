"""nixpkgs' ``nixos/tests/login.nix``, its test script kept line for line, on Debian.

The body of ``test_login`` below is the ``testScript`` of nixos/tests/login.nix
(nixpkgs, 2024-2025), pasted unchanged: the NixOS script globals (``subtest``)
are fixtures of the same names and ``machine.start(allow_reboot = True)``,
``wait_until_tty_matches("2", "login: ")`` and ``with subtest(...)`` behave as
in NixOS. Each subtest is reported as its own result (``pytest -rA`` lists them;
``--junitxml`` has one entry each).

What had to change is only the node's configuration, NixOS module options
turned into Debian packages and files:

* ``sound.enable = true`` (for the ``/dev/snd/timer`` ACL checks): Debian's
  kernel has the sound modules; nothing loads ``snd-timer`` without a sound
  card, so ``/etc/modules-load.d`` loads it at boot.
* ACLs follow the active VT through systemd-logind: ``libpam-systemd`` (the
  login session is registered) and ``dbus`` (logind needs it); ``acl`` for
  ``getfacl``; ``kbd`` for ``fgconsole`` and ``chvt``.
* Debian's getty runs ``agetty ... - linux`` (the tty is its stdin); the script
  looks for ``agetty.*tty1``, so a drop-in names the tty as NixOS does.
* NixOS users get bash; Debian's ``useradd`` gives ``/bin/sh`` unless
  ``/etc/default/useradd`` says otherwise (the script checks ``pgrep -u alice bash``).

Run it with ``pytest examples/test_nixos_login.py -rA`` (passed in 78 s under TCG,
every subtest passing, each its own ``--junitxml`` entry).
"""

import pytest

from vmtest import MachineConfig

machine_config = MachineConfig(
    packages=["acl", "kbd", "libpam-systemd", "dbus"],
    files={
        "/etc/modules-load.d/snd-timer.conf": "snd-timer\n",
        "/etc/default/useradd": "SHELL=/bin/bash\n",
        # Debian's agetty reads its tty from stdin ("agetty ... - linux"); NixOS's names it, and the
        # script finds it so (pgrep -f 'agetty.*tty1').
        "/etc/systemd/system/getty@.service.d/tty-name.conf": (
            "[Service]\nExecStart=\nExecStart=-/sbin/agetty -o '-p -- \\\\u' --noclear %I $TERM\n"
        ),
    },
)


@pytest.mark.vmtest(nodes={"machine": machine_config})
def test_login(machine, subtest):
    machine.start(allow_reboot = True)  # fmt: skip

    machine.wait_for_unit("multi-user.target")
    machine.wait_until_succeeds("pgrep -f 'agetty.*tty1'")
    machine.screenshot("postboot")

    with subtest("create user"):
        machine.succeed("useradd -m alice")
        machine.succeed("(echo foobar; echo foobar) | passwd alice")

    with subtest("Check whether switching VTs works"):
        machine.fail("pgrep -f 'agetty.*tty2'")
        machine.send_key("alt-f2")
        machine.wait_until_succeeds("[ $(fgconsole) = 2 ]")
        machine.wait_for_unit("getty@tty2.service")
        machine.wait_until_succeeds("pgrep -f 'agetty.*tty2'")

    with subtest("Log in as alice on a virtual console"):
        machine.wait_until_tty_matches("2", "login: ")
        machine.send_chars("alice\n")
        machine.wait_until_tty_matches("2", "login: alice")
        machine.wait_until_succeeds("pgrep login")
        machine.wait_until_tty_matches("2", "Password: ")
        machine.send_chars("foobar\n")
        machine.wait_until_succeeds("pgrep -u alice bash")
        machine.send_chars("touch done\n")
        machine.wait_for_file("/home/alice/done")

    with subtest("Systemd gives and removes device ownership as needed"):
        machine.succeed("getfacl /dev/snd/timer | grep -q alice")
        machine.send_key("alt-f1")
        machine.wait_until_succeeds("[ $(fgconsole) = 1 ]")
        machine.fail("getfacl /dev/snd/timer | grep -q alice")
        machine.succeed("chvt 2")
        machine.wait_until_succeeds("getfacl /dev/snd/timer | grep -q alice")

    with subtest("Virtual console logout"):
        machine.send_chars("exit\n")
        machine.wait_until_fails("pgrep -u alice bash")
        machine.screenshot("getty")

    with subtest("Check whether ctrl-alt-delete works"):
        boot_id1 = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
        assert boot_id1 != ""

        machine.reboot()

        boot_id2 = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
        assert boot_id2 != ""

        assert boot_id1 != boot_id2

        machine.shutdown()
