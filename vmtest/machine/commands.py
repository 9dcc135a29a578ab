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
LOG_TTY = "/dev/ttyS0"  # the serial console: every line of it is logged (name # line)


def streamed(command: str) -> str:
    """``command`` with its stdout also copied to the serial console as it comes (its status kept:
    the backdoor runs commands with ``pipefail``)."""
    return f"(\n{command}\n) | tee {LOG_TTY}"


class CommandResult(tuple[int, str]):
    """What :meth:`~vmtest.Machine.execute` returns: the ``(status, stdout)`` pair NixOS's ``execute``
    returns, which also carries the command's ``stderr`` and ``elapsed`` (its own run time in seconds,
    without a boot it waited for)."""

    stderr: str
    elapsed: float

    def __new__(cls, status: int, stdout: str, stderr: str = "", elapsed: float = 0.0) -> CommandResult:
        result = super().__new__(cls, (status, stdout))
        result.stderr = stderr
        result.elapsed = elapsed
        return result

    @property
    def status(self) -> int:
        return self[0]

    @property
    def stdout(self) -> str:
        return self[1]


class Commands:
    def __init__(self, vm: Lifecycle, conditions: list[polling.PollingCondition]) -> None:
        self.vm = vm
        self.conditions = conditions
        self.stream = False  # Machine.streaming(): stdout also to the serial console, as it comes

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> CommandResult:
        if self.conditions:
            polling.check_all(self.conditions, f"{self.vm.name}: {command!r}")
        command_sent = streamed(command) if self.stream else command
        if depth() == 0:  # straight from a test: a span of its timeline (inside a verb the verb's is enough)
            with span(self.vm.logger, f"execute: {command}"):
                result = self.vm.run(command_sent, timeout)
        else:
            result = self.vm.run(command_sent, timeout)
        since = time.monotonic() - result.elapsed  # when the command was sent (after any boot)
        if result.killed:
            raise Timeout(
                self.vm.name,
                f"command {command!r}",
                f"still running after {timeout:g}s; it was killed in the guest. Output so far is lost; "
                "raise timeout= if it needs longer",
                result.elapsed,
                self.vm.console_tail(since=since),
            )
        stderr = result.stderr.decode(errors="surrogateescape")
        self.vm.logger.debug("%s: %r -> %d in %.3fs", self.vm.name, command, result.status, result.elapsed)
        if stderr:
            self.vm.logger.debug("%s: stderr of %r:\n%s", self.vm.name, command, stderr.rstrip("\n"))
        out = result.output.decode(errors="surrogateescape") if check_output else ""
        return CommandResult(result.status, out, stderr, result.elapsed)

    def failed(self, command: str, result: CommandResult, expected: str = "exit status 0") -> CommandFailed:
        """The :class:`CommandFailed` for ``result``, quoting the console lines since the command began."""
        return CommandFailed(
            self.vm.name,
            command,
            result.status,
            result.stdout,
            result.elapsed,
            expected=expected,
            console_tail=self.vm.console_tail(since=time.monotonic() - result.elapsed),
            stderr=result.stderr,
        )

    def must(self, command: str, what: str = "", timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run ``command``; its output, or :class:`CommandFailed` (named ``what``) unless it exits 0."""
        result = self.execute(command, timeout=timeout)
        if result.status != 0:
            raise self.failed(what or command, result)
        return result.stdout

    def succeed(self, commands: tuple[str, ...], timeout: float | None) -> str:
        output = ""
        for command in commands:
            with self.vm.nested(f"must succeed: {command}"):
                output += self.must(command, timeout=timeout or DEFAULT_TIMEOUT)
        return output

    def fail(self, commands: tuple[str, ...], timeout: float | None) -> str:
        output = ""
        for command in commands:
            with self.vm.nested(f"must fail: {command}"):
                result = self.execute(command, timeout=timeout or DEFAULT_TIMEOUT)
                if result.status == 0:
                    raise self.failed(command, result, expected="a non-zero exit status")
            output += result.stdout
        return output

    def wait_until(self, what: str, check: Callable[[bool], bool], timeout: float, describe: Callable[[], str]) -> None:
        """Poll ``check(last_try)`` until it is true; else :class:`Timeout` with ``describe()``'s last view."""
        start = time.monotonic()
        if not retry(check, timeout):
            last = describe()
            detail = f"gave up after {timeout:g}s" + (f"; last seen: {last}" if last else "")
            raise Timeout(self.vm.name, what, detail, time.monotonic() - start, self.vm.console_tail(since=start))

    def wait_for_status(self, command: str, succeed: bool, timeout: float) -> str:
        wanted = "succeed" if succeed else "fail"
        with self.vm.nested(f"waiting for {command!r} to {wanted}"):
            last: dict[str, object] = {}

            def check(_: bool) -> bool:
                result = self.execute(command, timeout=timeout)
                last.update(status=result.status, output=result.stdout, stderr=result.stderr)
                return (result.status == 0) == succeed

            self.wait_until(
                f"waiting for {command!r} to {wanted}",
                check,
                timeout,
                lambda: (
                    f"exit status {last.get('status')}, output {str(last.get('output'))[-500:]!r}"
                    + (f", stderr {str(last['stderr'])[-500:]!r}" if last.get("stderr") else "")
                ),
            )
            return str(last["output"])
