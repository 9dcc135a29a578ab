"""vmtest.retry.retry: first truthy result, one last try, bounded by the timeout."""

from __future__ import annotations

import time

import pytest

from vmtest.core import retry as retry_module
from vmtest.core.retry import retry


class Probe:
    """A callable recording (time, last_try) and answering from a script."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.answer = answer
        self.calls: list[tuple[float, bool]] = []

    def __call__(self, last_try: bool):  # type: ignore[no-untyped-def]
        self.calls.append((time.monotonic(), last_try))
        return self.answer(len(self.calls), last_try)

    @property
    def flags(self) -> list[bool]:
        return [last for _, last in self.calls]


def test_returns_first_truthy_result() -> None:
    probe = Probe(lambda n, last: {1: None, 2: False, 3: "ready", 4: "too late"}.get(n))
    assert retry(probe, timeout=5.0, interval=0.01) == "ready"
    assert len(probe.calls) == 3
    assert probe.flags == [False, False, False]


def test_immediate_success_does_not_sleep() -> None:
    probe = Probe(lambda n, last: 42)
    start = time.monotonic()
    assert retry(probe, timeout=5.0, interval=1.0) == 42
    assert time.monotonic() - start < 0.5  # a sleep would take >= 1.0 s
    assert probe.flags == [False]


def test_last_try_flag_exactly_once_at_the_end() -> None:
    probe = Probe(lambda n, last: None)
    assert retry(probe, timeout=0.3, interval=0.02, max_interval=0.05) is None
    assert len(probe.calls) >= 3
    assert probe.flags.count(True) == 1
    assert probe.flags[-1] is True


def test_returns_result_of_last_try() -> None:
    marker: list[str] = []
    probe = Probe(lambda n, last: marker if last else None)  # falsy, but not None
    assert retry(probe, timeout=0.2, interval=0.02) is marker


def test_success_on_last_try() -> None:
    probe = Probe(lambda n, last: "diagnosed" if last else None)
    assert retry(probe, timeout=0.2, interval=0.02, max_interval=0.05) == "diagnosed"
    assert probe.flags[-1] is True


def test_respects_timeout() -> None:
    probe = Probe(lambda n, last: None)
    start = time.monotonic()
    retry(probe, timeout=0.3, interval=0.02, max_interval=0.05)
    elapsed = time.monotonic() - start
    # The last try happens once the next pause would cross the deadline.
    assert 0.3 - 0.05 - 0.02 <= elapsed <= 0.3 + 0.5  # loose upper bound: loaded CI machines
    assert probe.calls[-1][0] - start <= 0.3 + 0.5


def test_does_not_busy_spin() -> None:
    probe = Probe(lambda n, last: None)
    retry(probe, timeout=0.3, interval=0.02, max_interval=0.06)
    times = [t for t, _ in probe.calls]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(probe.calls) <= 16  # 0.3 s at no less than 0.02 s apart (a loaded host only makes fewer)
    assert min(gaps) >= 0.015


class FakeClock:
    """time.monotonic and time.sleep of a clock that moves only when slept on: the pauses retry asks for,
    exactly, whatever the host's load (a real clock's gaps once failed an upper bound under load)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backs_off_to_the_cap_and_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(retry_module, "time", clock)
    probe = Probe(lambda n, last: None)
    assert retry(probe, timeout=0.3, interval=0.02, max_interval=0.06) is None
    # the pause grows by half each time up to max_interval; the try whose next pause would cross the
    # deadline is the last one
    assert clock.sleeps == pytest.approx([0.02, 0.03, 0.045, 0.06, 0.06, 0.06])
    assert probe.flags == [False] * 6 + [True]
    assert clock.now - 1000.0 == pytest.approx(0.275)


def test_zero_timeout_tries_once_as_last_try() -> None:
    probe = Probe(lambda n, last: None)
    assert retry(probe, timeout=0.0) is None
    assert probe.flags == [True]
