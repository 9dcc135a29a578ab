"""systemd in the guest: ``systemctl``, unit properties, waiting for units (system or user managers)."""

from __future__ import annotations

import shlex
import time

from vmtest.core.errors import UnitFailed
from vmtest.machine.commands import DEFAULT_TIMEOUT, CommandResult, Commands


class Systemd:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.vm = commands.vm

    def systemctl(self, query: str, user: str | None = None) -> CommandResult:
        if user is not None:
            query = query.replace("'", "\\'")
            return self.commands.execute(
                f"su -l {shlex.quote(user)} --shell /bin/sh -c "
                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {query}'"
            )
        return self.commands.execute(f"systemctl {query}")

    def _show(self, args: str, what: str, user: str | None) -> str:
        result = self.systemctl(f"--no-pager show {args}", user)
        if result.status != 0:
            raise self.commands.failed(what, result)
        return result.stdout

    def unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        out = self._show(shlex.quote(unit), f"systemctl show {unit}", user)
        info = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key] = value
        return info

    def unit_property(self, unit: str, prop: str, user: str | None = None) -> str:
        out = self._show(
            f"--property={shlex.quote(prop)} --value {shlex.quote(unit)}", f"systemctl show -p {prop} {unit}", user
        )
        return out.rstrip("\n")

    def _unit_report(self, unit: str, user: str | None) -> str:
        _, status = self.systemctl(f"--no-pager status {shlex.quote(unit)} 2>&1 || true", user)
        return status.strip()

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        with self.vm.nested(f"waiting for unit {unit}"):
            start = time.monotonic()
            last = {"state": "unknown"}
            what = f"waiting for unit {unit}"

            def failed(why: str) -> UnitFailed:
                return UnitFailed(self.vm.name, what, why, time.monotonic() - start, self.vm.console_tail(since=start))

            def check(_last_try: bool) -> bool:
                info = self.unit_info(unit, user)
                state = info.get("ActiveState", "unknown")
                last["state"] = f"{state} ({info.get('SubState', '?')})"
                if info.get("LoadState") == "not-found":
                    raise failed("no such unit (LoadState=not-found)")
                if state == "failed":
                    raise failed(f"the unit failed:\n{self._unit_report(unit, user)}")
                if state == "inactive":
                    _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                    if "No jobs" in jobs and self.unit_info(unit, user).get("ActiveState") == "inactive":
                        raise failed(f"the unit is inactive and no job is pending:\n{self._unit_report(unit, user)}")
                return state == "active"

            self.commands.wait_until(what, check, timeout, lambda: last["state"])

    def require_unit_state(self, unit: str, require_state: str = "active", user: str | None = None) -> None:
        state = self.unit_info(unit, user).get("ActiveState")
        if state != require_state:
            raise UnitFailed(
                self.vm.name,
                f"checking unit {unit}",
                f"expected state {require_state!r}, found {state!r}:\n{self._unit_report(unit, user)}",
                None,
                self.vm.console_tail(),
            )
