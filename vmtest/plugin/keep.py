"""``--vm-keep-on-failure``: a failed test's running machines stay up after it, for ``--vm-keep-for``.

The failure report names them (a dry run, before ``--pdb`` or ``--vm-debug-hook`` may still use the
machines); at the start of the test's teardown each running machine's supervisor gets a ticket with the
deadline (:mod:`vmtest.core.supervisor`), the machine is entered in the registry
(:mod:`vmtest.vm.keep`) and let go by this run: its channels are closed, its QEMU is no longer this
run's to kill and its state directory is no longer this run's to remove. Its VLAN switches are kept
the same way (a kept machine keeps its network). The report says how to attach and how to end them.
Machines shared by the tests of a module or class (``scope="module"``/``"class"``) are not kept: the
next tests of that scope still use them.
"""

from __future__ import annotations

import shlex
import time

from vmtest.config.settings import Settings
from vmtest.core import statedirs
from vmtest.net.driver import Driver
from vmtest.plugin.fixtures import SHARED
from vmtest.vm import keep


def keep_drivers(drivers: list[Driver], run: Settings, test: str, dry_run: bool = False) -> list[keep.Kept]:
    """Keep the running machines of ``drivers`` (and their switches) for ``run.keep_for`` seconds
    (``dry_run``: only say which, for the report written before the test's teardown keeps them)."""
    deadline = time.time() + run.keep_for
    root = keep.registry(run.cache_dir)
    kept: list[keep.Kept] = []
    for driver in drivers:
        if driver in SHARED:  # the next tests of its module or class still use these machines
            continue
        running = {name: m.vm for name, m in driver.machines.items() if m.vm.is_running() and m.vm.pid is not None}
        if not running:
            continue
        owned = driver.owns_state_root  # a temporary network directory: it goes when its machines end
        rmdir = [str(driver.state_root)] if owned else []
        switch_pids = []
        for switch in [] if dry_run else driver.switches.values():
            if switch.process is not None and switch.process.poll() is None:
                keep.write_ticket(switch.directory / "switch.log", deadline, [str(switch.directory)] * owned, rmdir)
                switch_pids.append(switch.process.pid)
                switch.process = None  # no longer this run's to stop
        driver.owns_state_root = owned and dry_run
        if not dry_run:
            # the leftover sweep of later runs must leave these directories alone while a kept process lives
            statedirs.hand_over(driver.state_root, [*switch_pids, *(vm.pid for vm in running.values() if vm.pid)])
            for switch in driver.switches.values():
                if switch.sockets != switch.directory:  # (a state root too long for the sockets)
                    statedirs.hand_over(switch.sockets, switch_pids)
            for vm in running.values():
                if vm.dirs.path is not None and vm.pid is not None:
                    statedirs.hand_over(vm.dirs.path, [vm.pid])
                    if vm.paths.separate_sockets:
                        statedirs.hand_over(vm.paths.sockets, [vm.pid])
        for name, vm in running.items():
            assert vm.pid is not None and vm.dirs.path is not None
            own = owned or vm.dirs.temporary
            entry_id = f"{name}-{vm.pid}"
            entry = keep.Kept(
                id=entry_id,
                name=name,
                test=test,
                pid=vm.pid,
                attach=str(vm.paths.attach),
                state_dir=str(vm.dirs.path),
                deadline=deadline,
                switches=switch_pids,
                remove=[str(vm.dirs.path)] * own + [str(root / f"{entry_id}.json")],
                rmdir=rmdir,
            )
            if not dry_run:
                keep.register(root, entry)
                keep.write_ticket(vm.paths.qemu_log, deadline, entry.remove, entry.rmdir)
                vm.let_go()
            kept.append(entry)
    return kept


def report(kept: list[keep.Kept], run: Settings) -> str:
    """What the failure report says about the kept machines: per node, how to attach and how to end it."""
    if not kept:
        return ""
    same = run.cache_dir == Settings.from_environment().cache_dir  # what the vmtest command finds by itself
    cache = "" if same else f" --cache-dir {shlex.quote(str(run.cache_dir))}"
    limit = f"{run.keep_for / 60:g}m" if run.keep_for % 60 == 0 else f"{run.keep_for:g}s"
    lines = [f"kept running for {limit} (--vm-keep-for), then killed:"]
    for k in kept:
        lines.append(f"  {k.name}: attach a root shell: vmtest{cache} attach {k.id}   (Ctrl-] detaches)")
        lines.append(f"  {k.name}: end it now:          vmtest{cache} kill {k.id}")
    lines.append(f"  all kept machines: vmtest{cache} ps; vmtest{cache} kill --all")
    return "\n".join(lines)
