"""Commands in the guest: ``execute``, ``succeed``, ``fail`` and the waits built on them.

Every command goes through the backdoor shell (:mod:`vmtest.vm.backdoor`);
the machine boots on the first command. Polling conditions are checked
before each command. Every wait polls with :func:`vmtest.core.retry.retry`
and on timeout raises :class:`~vmtest.core.errors.Timeout` naming what it
waited for, for how long, and what it saw last.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vmtest.core.errors import CommandFailed, Timeout
from vmtest.core.log import depth, span
from vmtest.core.retry import retry
from vmtest.machine import polling
from vmtest.machine.part import Lifecycle

DEFAULT_TIMEOUT = 900.0


class Commands:
    def __init__(self, vm: Lifecycle, conditions: list[polling.PollingCondition]) -> None:
        self.vm = vm
        self.conditions = conditions

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, str]:
        if self.conditions:
            polling.check_all(self.conditions, f"{self.vm.name}: {command!r}")
        if depth() == 0:  # straight from a test: a span of its timeline (inside a verb the verb's is enough)
            with span(self.vm.logger, f"execute: {command}"):
                result = self.vm.run(command, timeout)
        else:
            result = self.vm.run(command, timeout)
        if result.killed:
            raise Timeout(
                self.vm.name,
                f"command {command!r}",
                f"still running after {timeout:g}s; it was killed in the guest. Output so far is lost; "
                "raise timeout= if it needs longer",
                result.elapsed,
                self.vm.console_tail(),
            )
        self.vm.logger.debug("%s: %r -> %d in %.3fs", self.vm.name, command, result.status, result.elapsed)
        return result.status, result.output.decode(errors="surrogateescape") if check_output else ""

    def must(self, command: str, what: str = "", timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run ``command``; its output, or :class:`CommandFailed` (named ``what``) unless it exits 0."""
        start = time.monotonic()
        status, out = self.execute(command, timeout=timeout)
        if status != 0:
            raise CommandFailed(
                self.vm.name,
                what or command,
                status,
                out,
                time.monotonic() - start,
                console_tail=self.vm.console_tail(),
            )
        return out

    def succeed(self, commands: tuple[str, ...], timeout: float | None) -> str:
        output = ""
        for command in commands:
            with self.vm.nested(f"must succeed: {command}"):
                output += self.must(command, timeout=timeout or DEFAULT_TIMEOUT)
        return output

    def fail(self, commands: tuple[str, ...], timeout: float | None) -> str:
        output = ""
        for command in commands:
            start = time.monotonic()
            with self.vm.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout or DEFAULT_TIMEOUT)
                if status == 0:
                    raise CommandFailed(
                        self.vm.name,
                        command,
                        status,
                        out,
                        time.monotonic() - start,
                        expected="a non-zero exit status",
                        console_tail=self.vm.console_tail(),
                    )
            output += out
        return output

    def wait_until(self, what: str, check: Callable[[bool], bool], timeout: float, describe: Callable[[], str]) -> None:
        """Poll ``check(last_try)`` until it is true; else :class:`Timeout` with ``describe()``'s last view."""
        start = time.monotonic()
        if not retry(check, timeout):
            last = describe()
            detail = f"gave up after {timeout:g}s" + (f"; last seen: {last}" if last else "")
            raise Timeout(self.vm.name, what, detail, time.monotonic() - start, self.vm.console_tail())

    def wait_for_status(self, command: str, succeed: bool, timeout: float) -> str:
        wanted = "succeed" if succeed else "fail"
        with self.vm.nested(f"waiting for {command!r} to {wanted}"):
            last: dict[str, object] = {}

            def check(_: bool) -> bool:
                status, out = self.execute(command, timeout=timeout)
                last.update(status=status, output=out)
                return (status == 0) == succeed

            self.wait_until(
                f"waiting for {command!r} to {wanted}",
                check,
                timeout,
                lambda: f"exit status {last.get('status')}, output {str(last.get('output'))[-500:]!r}",
            )
            return str(last["output"])
