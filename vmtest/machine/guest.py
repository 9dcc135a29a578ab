"""What a test asks of a running guest beyond one command: systemd units,
waiting for files, ports and sockets, and copying files.

``GuestOps`` is one part of :class:`~vmtest.machine.Machine`; it only needs a
way to run a command (the machine's ``execute``) and to build errors. Every
wait polls with :func:`vmtest.retry.retry` and, on timeout, raises
:class:`~vmtest.errors.Timeout` saying what it waited for, for how long, and
what it saw last.
"""

from __future__ import annotations

import base64
import io
import os
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vmtest.core.errors import CommandFailed, MachineError, Timeout
from vmtest.vm.argv import XCHG_GUEST_PATH
from vmtest.core.retry import retry

Execute = Callable[..., tuple[int, str]]


class UnitFailed(MachineError):
    """A systemd unit failed (or went inactive with nothing pending) while being waited for."""


class GuestOps:
    def __init__(self, name: str, execute: Execute, console_tail: Callable[[], list[str]]) -> None:
        self.name = name
        self.execute = execute
        self.console_tail = console_tail

    def _timeout(self, what: str, timeout: float, start: float, last: str = "") -> Timeout:
        detail = f"gave up after {timeout:g}s" + (f"; last seen: {last}" if last else "")
        return Timeout(self.name, what, detail, time.monotonic() - start, self.console_tail())

    def wait_until(self, what: str, check: Callable[[bool], bool], timeout: float, describe: Callable[[], str]) -> None:
        start = time.monotonic()
        if not retry(check, timeout):
            raise self._timeout(what, timeout, start, describe())

    # -- systemd -------------------------------------------------------------

    def systemctl(self, query: str, user: str | None = None) -> tuple[int, str]:
        if user is not None:
            query = query.replace("'", "\\'")
            return self.execute(
                f"su -l {shlex.quote(user)} --shell /bin/sh -c "
                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {query}'"
            )
        return self.execute(f"systemctl {query}")

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        status, out = self.systemctl(f"--no-pager show {shlex.quote(unit)}", user)
        if status != 0:
            raise CommandFailed(self.name, f"systemctl show {unit}", status, out, 0.0,
                                console_tail=self.console_tail())
        info = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key] = value
        return info

    def get_unit_property(self, unit: str, prop: str, user: str | None = None) -> str:
        status, out = self.systemctl(f"--no-pager show --property={shlex.quote(prop)} --value {shlex.quote(unit)}", user)
        if status != 0:
            raise CommandFailed(self.name, f"systemctl show -p {prop} {unit}", status, out, 0.0,
                                console_tail=self.console_tail())
        return out.rstrip("\n")

    def _unit_report(self, unit: str, user: str | None) -> str:
        _, status = self.systemctl(f"--no-pager status {shlex.quote(unit)} 2>&1 || true", user)
        return status.strip()

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: float = 900) -> None:
        start = time.monotonic()
        last = {"state": "unknown"}

        def check(_: bool) -> bool:
            info = self.get_unit_info(unit, user)
            state = info.get("ActiveState", "unknown")
            last["state"] = f"{state} ({info.get('SubState', '?')})"
            if info.get("LoadState") == "not-found":
                raise UnitFailed(self.name, f"waiting for unit {unit}", "no such unit (LoadState=not-found)",
                                 time.monotonic() - start, self.console_tail())
            if state == "failed":
                raise UnitFailed(self.name, f"waiting for unit {unit}",
                                 f"the unit failed:\n{self._unit_report(unit, user)}",
                                 time.monotonic() - start, self.console_tail())
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs and self.get_unit_info(unit, user).get("ActiveState") == "inactive":
                    raise UnitFailed(self.name, f"waiting for unit {unit}",
                                     f"the unit is inactive and no job is pending:\n{self._unit_report(unit, user)}",
                                     time.monotonic() - start, self.console_tail())
            return state == "active"

        self.wait_until(f"waiting for unit {unit}", check, timeout, lambda: last["state"])

    def require_unit_state(self, unit: str, require_state: str = "active", user: str | None = None) -> None:
        state = self.get_unit_info(unit, user).get("ActiveState")
        if state != require_state:
            raise UnitFailed(self.name, f"checking unit {unit}",
                             f"expected state {require_state!r}, found {state!r}:\n{self._unit_report(unit, user)}",
                             None, self.console_tail())

    # -- files, ports, sockets -----------------------------------------------

    def _probe(self, command: str) -> Callable[[bool], bool]:
        return lambda _: self.execute(command)[0] == 0

    def wait_for_file(self, path: str, timeout: float = 900) -> None:
        self.wait_until(f"waiting for file {path}", self._probe(f"test -e {shlex.quote(path)}"), timeout,
                        lambda: "it does not exist")

    def _port_check(self, port: int, addr: str) -> str:
        return f"nc -z -w 1 {shlex.quote(addr)} {int(port)}"

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = 900) -> None:
        self.wait_until(f"waiting for TCP port {addr}:{port} to open", self._probe(self._port_check(port, addr)),
                        timeout, lambda: "nothing accepts connections there")

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = 900) -> None:
        cmd = self._port_check(port, addr)
        self.wait_until(f"waiting for TCP port {addr}:{port} to close", lambda _: self.execute(cmd)[0] != 0,
                        timeout, lambda: "it still accepts connections")

    def wait_for_open_unix_socket(self, path: str, is_datagram: bool = False, timeout: float = 900) -> None:
        flags = "-uU" if is_datagram else "-U"
        self.wait_until(f"waiting for unix socket {path}",
                        self._probe(f"nc -z {flags} {shlex.quote(path)}"), timeout,
                        lambda: "nothing listens there")

    # -- copying through the backdoor (no shared directory needed) ------------

    def copy_from_host_via_shell(self, source: str | os.PathLike[str], target: str) -> None:
        """Copy a host file or directory tree to ``target`` in the guest, modes kept.

        The data travels as base64 through the backdoor, in 1 MiB commands.
        """
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"copy_from_host: {src} does not exist on the host")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(src, arcname="." if src.is_dir() else "file")
        data = base64.b64encode(buf.getvalue()).decode()
        archive = f"/tmp/.vmtest-copy-{time.monotonic_ns()}"
        chunk = 1 << 20
        for i in range(0, max(len(data), 1), chunk):
            status, out = self.execute(f"printf %s {data[i:i + chunk]} >> {archive}")
            if status != 0:
                raise CommandFailed(self.name, "copy_from_host (sending)", status, out, 0.0)
        t = shlex.quote(target)
        if src.is_dir():
            unpack = f"mkdir -p {t} && base64 -d {archive} | tar -xzpf - -C {t}"
        else:
            unpack = (f"mkdir -p \"$(dirname {t})\" && tmp=$(mktemp -d) && "
                      f"base64 -d {archive} | tar -xzpf - -C \"$tmp\" && mv \"$tmp/file\" {t} && rmdir \"$tmp\"")
        status, out = self.execute(f"rc=0; {{ {unpack}; }} || rc=$?; rm -f {archive}; exit $rc")
        if status != 0:
            raise CommandFailed(self.name, f"copy_from_host {src} -> {target}", status, out, 0.0,
                                console_tail=self.console_tail())

    def copy_from_vm_via_shell(self, source: str, target_dir: str | os.PathLike[str]) -> Path:
        """Copy a guest file or directory tree into the host directory ``target_dir``, modes kept."""
        status, out = self.execute(
            f"cd {shlex.quote(str(Path(source).parent))} && tar -czpf - {shlex.quote(Path(source).name)} | base64 -w 0"
        )
        if status != 0:
            raise CommandFailed(self.name, f"copy_from_vm {source}", status, out, 0.0,
                                console_tail=self.console_tail())
        dest = Path(target_dir)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(out)), mode="r:gz") as tar:
            tar.extractall(dest, filter="tar")
        return dest / Path(source).name

    # -- copying through the 9p exchange directory -----------------------------

    def _must(self, command: str, what: str) -> None:
        status, out = self.execute(command)
        if status != 0:
            raise CommandFailed(self.name, what, status, out, 0.0, console_tail=self.console_tail())

    def copy_from_host_via_share(self, source: str | os.PathLike[str], target: str, host_dir: Path) -> None:
        """Copy through ``host_dir`` (the host side of /tmp/xchg)."""
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"copy_from_host: {src} does not exist on the host")
        stage = Path(tempfile.mkdtemp(prefix="in-", dir=host_dir))
        guest_stage = f"{XCHG_GUEST_PATH}/{stage.name}/data"
        t = shlex.quote(target)
        try:
            if src.is_dir():
                shutil.copytree(src, stage / "data", symlinks=True)
                self._must(f"mkdir -p {t} && cp -a {guest_stage}/. {t}/", f"copy_from_host {src} -> {target}")
            else:
                shutil.copy2(src, stage / "data")
                self._must(f'mkdir -p "$(dirname {t})" && cp -a {guest_stage} {t}', f"copy_from_host {src} -> {target}")
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def copy_from_vm_via_share(self, source: str, dest: Path, host_dir: Path) -> Path:
        """Copy the guest's ``source`` into ``dest`` through ``host_dir``; returns the host path."""
        stage = Path(tempfile.mkdtemp(prefix="out-", dir=host_dir))
        try:
            self._must(f"cp -a {shlex.quote(source)} {XCHG_GUEST_PATH}/{stage.name}/", f"copy_from_vm {source}")
            dest.mkdir(parents=True, exist_ok=True)
            final = dest / Path(source).name
            if final.is_dir():
                shutil.rmtree(final)
            shutil.move(str(stage / Path(source).name), final)
            return final
        finally:
            shutil.rmtree(stage, ignore_errors=True)
