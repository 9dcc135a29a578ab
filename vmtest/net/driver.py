"""A test network: the machines of one test (or module/class) and their VLAN switches.

``Driver`` is what the ``vms`` fixture returns, after the NixOS driver:
``machines``, ``vlans``, ``start_all()``, ``join_all()``, ``subtest()``,
``retry()``. It owns its switches and machines and releases them all.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from vmtest.config.machine import MachineConfig
from vmtest.core import meminfo, statedirs
from vmtest.core.errors import ConfigError
from vmtest.core.log import get_logger, nested
from vmtest.core.retry import retry as _retry
from vmtest.core.threads import signals_to_main
from vmtest.image import ImageStore
from vmtest.machine.machine import Machine
from vmtest.machine.polling import PollingCondition
from vmtest.net.plan import hosts_file, nic_args, plan, setup_script
from vmtest.net.switch import Switch, socket_room
from vmtest.vm import hostmem
from vmtest.vm.channels import NetworkAttachment
from vmtest.vm.paths import SOCKET_ROOM as MACHINE_SOCKET_ROOM

T = TypeVar("T")
MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
NAME_RULE = (
    "a machine name is 1..63 letters, digits, '-' or '_' starting with a letter or digit "
    "(it becomes the guest's host name)"
)


def python_name(name: str) -> str:
    """The Python name of a node, as NixOS makes it: every character that cannot be in an identifier
    becomes ``_`` (``server-lazy`` -> ``server_lazy``), and so does a leading digit."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + out[1:] if out[:1].isdigit() else out


def check_names(names: list[str], where: str) -> None:
    """ConfigError unless every name is a valid machine name and no two share a Python name."""
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not MACHINE_NAME.fullmatch(name):
            raise ConfigError(where, name, NAME_RULE)
        other = seen.setdefault(python_name(name), name)
        if other != name:
            raise ConfigError(
                where,
                name,
                f"{other!r} and {name!r} both become the Python name {python_name(name)!r} "
                "(its fixture and vms attribute)",
                "rename one of them",
            )


class Driver:
    """The machines of a test network and their VLAN switches: what the ``vms`` fixture returns.

    Machines are numbered and addressed in the alphabetical order of their names (see the README's
    "Networks"); the plugin releases the driver after the test (or module/class).
    """

    def __init__(
        self,
        nodes: Mapping[str, MachineConfig],
        store: ImageStore,
        accel: str | None = None,
        state_root: Path | None = None,
        snapshots: bool | None = None,
        kept_root: Path | None = None,
    ) -> None:
        check_names(list(nodes), "nodes")
        for name, config in nodes.items():
            if not isinstance(config, MachineConfig):
                raise ConfigError(f"nodes[{name!r}]", config, "expected a vmtest.MachineConfig")
        self.logger = get_logger("driver")
        self.owns_state_root = state_root is None  # a temporary directory, removed at release
        # where a machine keeps what outlives the run even without --vm-keep-state (efi.keep_variables):
        # <kept_root>/<name>, the directory --vm-keep-state keeps its state in
        self.kept_root = kept_root
        self.plans = plan(
            {name: cfg.virtualisation.vlans for name, cfg in nodes.items()},
            {name: cfg.virtualisation.interfaces for name, cfg in nodes.items()},
        )
        #: The VLAN numbers in use, sorted.
        self.vlans = sorted({nic.vlan for p in self.plans.values() for nic in p.nics})
        # room for the switches' sockets and the machines' (a machine's state directory is <state_root>/<name>)
        room = max(
            [socket_room(1), *map(socket_room, self.vlans), *(len(f"/{name}") + MACHINE_SOCKET_ROOM for name in nodes)]
        )
        self.state_root = state_root or statedirs.make("vmtest-net-", socket_room=room)
        self.switches = {vlan: Switch(vlan, self.state_root / f"vlan{vlan}", self.logger) for vlan in self.vlans}
        self.polling_conditions: list[PollingCondition] = []
        self._switches_up = False
        self._switch_lock = threading.Lock()
        self.aborted: str | None = None
        #: The machines by name.
        self.machines: dict[str, Machine] = {}
        self.store = store
        self.accel = accel
        self.snapshots = snapshots  # None: as the environment's run settings say
        self.output_dir: Path | None = None  # where machines put screenshots (set by the plugin)
        # pytest's subtests fixture of the running test (set by the plugin): each subtest its own result
        self.subtests: Callable[[], Any] | None = None
        for name in sorted(nodes):
            self.machines[name] = self._machine(name, nodes[name], self._attachment(name))

    def _attachment(self, name: str) -> NetworkAttachment:
        node = self.plans[name]
        sockets = {vlan: sw.socket for vlan, sw in self.switches.items()}
        return NetworkAttachment(
            qemu_args=tuple(nic_args(node.nics, sockets)),
            nic_ids=tuple(f"nic-vlan{nic.vlan}" for nic in node.nics),
            setup_script=setup_script(node),
            hosts=hosts_file(self.plans),
            ensure_up=self._ensure_switches,
            key_args=tuple(nic_args(node.nics, {vlan: Path(f"/@vlan{vlan}@") for vlan in sockets})),
        )

    def _join(self, name: str, config: MachineConfig) -> NetworkAttachment:
        """Plan a machine added at run time into the network: the next free number, switches for new VLANs."""
        number = max((p.number for p in self.plans.values()), default=0) + 1
        virt = config.virtualisation
        self.plans[name] = plan({name: virt.vlans}, {name: virt.interfaces}, first=number)[name]
        with self._switch_lock:
            for nic in self.plans[name].nics:
                if nic.vlan not in self.switches:
                    self.switches[nic.vlan] = Switch(nic.vlan, self.state_root / f"vlan{nic.vlan}", self.logger)
                    if self._switches_up:
                        self.switches[nic.vlan].start()
            self.vlans = sorted(self.switches)
        return self._attachment(name)

    def __getattr__(self, name: str) -> Machine:
        """A machine by its Python name (``vms.server_lazy`` for the node ``server-lazy``)."""
        machines = self.__dict__.get("machines", {})
        for real, machine in machines.items():
            if python_name(real) == name:
                return machine  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or machine {name!r}")

    def _machine(
        self, name: str, config: MachineConfig, network: NetworkAttachment | None, snapshots: bool | None = None
    ) -> Machine:
        return Machine(
            name,
            config,
            state_dir=self.state_root / name,
            kept_dir=self.kept_root / name if self.kept_root is not None else None,
            store=self.store,
            accel=self.accel,
            network=network,
            polling_conditions=self.polling_conditions,
            output_dir=self.output_dir,
            snapshots=self.snapshots if snapshots is None else snapshots,
        )

    def create_machine(
        self, name: str, config: MachineConfig | None = None, snapshots: bool | None = None, network: bool = False
    ) -> Machine:
        """Add a machine at run time (it starts on first use); released with the others.

        ``network=True``: it joins the VLANs its config declares (``vlans``/``interfaces``), numbered
        after the machines already there (their addresses do not change; its ``/etc/hosts`` lists them,
        theirs do not list it). Else it has no network. ``snapshots=False``: it always boots for real.
        """
        if name in self.machines:
            raise ConfigError(
                "create_machine(name)", name, "a machine of this network already has that name", "choose another name"
            )
        check_names([*self.machines, name], "create_machine(name)")
        if config is not None and not isinstance(config, MachineConfig):
            raise ConfigError(f"create_machine({name!r}, config)", config, "expected a vmtest.MachineConfig")
        config = config or MachineConfig()
        machine = self._machine(name, config, self._join(name, config) if network else None, snapshots)
        self.machines[name] = machine
        return machine

    def set_output_dir(self, path: Path) -> None:
        """Point every machine's screenshots (and later ones') at ``path``."""
        self.output_dir = path
        for machine in self.machines.values():
            machine.output_dir = path

    def _ensure_switches(self) -> None:
        with self._switch_lock:  # machines launch in parallel
            if not self._switches_up:
                for switch in self.switches.values():
                    switch.start()
                self._switches_up = True

    def _each(self, action: Callable[[Machine], object]) -> None:
        """``action`` on every machine at once (one thread each); the first error is raised."""
        machines = list(self.machines.values())
        if len(machines) == 1:
            action(machines[0])
            return
        with ThreadPoolExecutor(max_workers=len(machines), thread_name_prefix="vmtest-start") as pool:
            with signals_to_main():  # the pool's threads start here
                futures = [pool.submit(action, m) for m in machines]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def start_all(self) -> None:
        """Launch every machine at once: images are built (or found) in parallel, then every machine is
        booted or restored in parallel. Returns once all of them run (not waiting for their shells)."""
        waiting = {n: m.config.virtualisation.memory_size for n, m in self.machines.items() if not m.is_running()}
        hostmem.check_fits(waiting, meminfo.available_mib())
        with nested(self.logger, "starting all machines"):
            self._each(lambda m: m.config.image is None and self.store.get(m.config))  # foreign: nothing to build
            self._each(lambda m: m.start())

    def join_all(self) -> None:
        """Wait until every machine's backdoor shell answers (starting those that are not running), all at
        once."""
        with nested(self.logger, "waiting for every machine's shell"):
            self._each(lambda m: m.connect())

    @contextmanager
    def subtest(self, name: str) -> Iterator[None]:
        """A named, timed section of a test; under pytest, a result of its own.

        Through pytest's ``subtests`` support (built into pytest 9), a failing subtest is reported
        (terminal, ``--junitxml``) and the test goes on with the next statement after the ``with``
        block; the test fails at its end if any subtest failed. Without it: a plain log section.
        """
        subtests = self.subtests() if self.subtests is not None else None
        if subtests is None:
            with nested(self.logger, f"subtest: {name}"):
                yield
            return
        with subtests.test(msg=name), nested(self.logger, f"subtest: {name}"):
            yield

    def polling_condition(
        self, fn: Callable[[], object] | None = None, *, seconds_interval: float = 2.0, description: str | None = None
    ) -> Any:
        """Declare an invariant: ``@vms.polling_condition`` on a function, then ``with cond: ...``.

        Inside the ``with`` block the condition is checked before every guest command (at most
        every ``seconds_interval``); when it stops holding the test fails at once with its name.
        ``cond.wait(timeout)`` waits until it holds.
        """

        def make(f: Callable[[], object]) -> PollingCondition:
            return PollingCondition(f, self.polling_conditions, seconds_interval, description)

        return make(fn) if fn is not None else make

    def retry(self, fn: Callable[[bool], T | None], timeout: float = 900) -> T | None:
        """Call ``fn(last_try)`` until it returns something truthy (or time runs out)."""
        return _retry(fn, timeout)

    def serial_stdout_on(self) -> None:
        """Log every machine's serial-console lines (the default)."""
        for machine in self.machines.values():
            machine.serial_echo = True

    def serial_stdout_off(self) -> None:
        """Stop logging serial-console lines (they are still kept for waits and reports)."""
        for machine in self.machines.values():
            machine.serial_echo = False

    def abort(self, reason: str) -> None:
        """Kill every machine now (calls waiting on them fail at once); used by the global timeout."""
        self.aborted = reason
        self.logger.error("%s: killing all machines", reason)
        for machine in self.machines.values():
            machine.vm.abort(reason)

    def release(self) -> None:
        """Release every machine (killing QEMUs still running), stop the switches, remove a temporary
        state root."""
        for machine in self.machines.values():
            machine.release()
        for switch in self.switches.values():
            switch.stop()
        self._switches_up = False
        if self.owns_state_root:
            shutil.rmtree(self.state_root, ignore_errors=True)
