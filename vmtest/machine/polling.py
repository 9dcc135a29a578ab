"""Polling conditions: invariants checked while a test runs (``vms.polling_condition``).

As in the NixOS driver: a condition is a function that must keep holding
(``machine.succeed("pgrep nginx")``); inside ``with condition:`` it is checked
before every guest command, at most once per ``seconds_interval``, and a
failure stops the test at once with the condition's name and its error
instead of letting later commands fail for a confusing reason. The condition
passes when it returns anything but ``False`` without raising.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from vmtest.core.errors import PollingConditionFailed
from vmtest.core.retry import retry

_checking = threading.local()


class PollingCondition:
    def __init__(
        self,
        condition: Callable[[], Any],
        registry: list[PollingCondition],
        seconds_interval: float = 2.0,
        description: str | None = None,
    ) -> None:
        self.condition = condition
        self.registry = registry
        self.seconds_interval = seconds_interval
        self.description = description or (condition.__doc__ or condition.__name__).strip().splitlines()[0]
        self.last_checked = float("-inf")
        self.last_error = ""

    def check(self, force: bool = False) -> bool:
        """Evaluate the condition (unless checked less than ``seconds_interval`` ago); True if it holds."""
        if getattr(_checking, "active", False):
            return True  # the condition's own guest commands do not re-check conditions
        now = time.monotonic()
        if not force and now - self.last_checked < self.seconds_interval:
            return True
        self.last_checked = now
        _checking.active = True
        try:
            result = self.condition()
            ok = result is not False
            self.last_error = "" if ok else "returned False"
        except Exception as exc:  # noqa: BLE001 - any failure of the condition means "does not hold"
            ok = False
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            _checking.active = False
        return ok

    def maybe_raise(self, during: str = "") -> None:
        if not self.check():
            where = f" (checked before {during})" if during else ""
            raise PollingConditionFailed(f"polling condition {self.description!r} failed{where}: {self.last_error}")

    def wait(self, timeout: float = 900) -> None:
        """Wait until the condition holds."""
        if not retry(lambda _last: self.check(force=True), timeout):
            raise PollingConditionFailed(
                f"polling condition {self.description!r} did not hold within {timeout:g}s: {self.last_error}"
            )

    def __enter__(self) -> PollingCondition:
        self.registry.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.registry.remove(self)


def check_all(registry: list[PollingCondition], during: str) -> None:
    for condition in list(registry):
        condition.maybe_raise(during)
