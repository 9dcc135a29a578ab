"""Progress events: what vmtest is busy with right now, for a display (the pytest plugin's).

An *activity* is one subject (a machine's name, ``image <label>``) doing one thing (booting, building),
from its start to its end; the :func:`vmtest.core.log.nested` sections opened inside it are its steps
(mmdebstrap, mkfs.ext4, ...). Emitters only call :func:`activity`; listeners (:func:`subscribe`) get
every :class:`Event`, from whichever thread the work runs in. Without a listener nothing happens.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """``subject`` is doing ``what`` since ``started`` (a :func:`time.monotonic` time), now at ``step``;
    ``outcome`` is "" while it runs, then "done" or "failed" (``ended``: when)."""

    subject: str
    what: str
    started: float
    step: str = ""
    outcome: str = ""
    ended: float = 0.0

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started


Listener = Callable[[Event], None]
_listeners: list[Listener] = []
_lock = threading.Lock()
_current: contextvars.ContextVar[Event | None] = contextvars.ContextVar("vmtest_progress", default=None)


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` with every event from now on; returns the function that unsubscribes it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def _emit(event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


@contextmanager
def activity(subject: str, what: str) -> Iterator[None]:
    """``subject`` does ``what`` inside this block: an event when it starts, one per step, one at the end."""
    event = Event(subject, what, time.monotonic())
    token = _current.set(event)
    _emit(event)
    outcome = "failed"
    try:
        yield
        outcome = "done"
    finally:
        _current.reset(token)
        _emit(Event(subject, what, event.started, outcome=outcome, ended=time.monotonic()))


def step(text: str) -> None:
    """The activity of this thread (if any) is now at ``text``."""
    event = _current.get()
    if event is not None:
        _emit(Event(event.subject, event.what, event.started, step=text))
