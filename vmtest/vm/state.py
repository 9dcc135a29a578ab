"""The states of a machine's lifecycle (:mod:`vmtest.vm.lifecycle`) and the transitions allowed between them.

Anything but these transitions is a bug::

    CREATED ──launch──▶ LAUNCHING ──channels attached──▶ RUNNING ──shell answered──▶ READY
                            │                               │  ▲                        │
                            └──▶ FAILED ◀── QEMU died ──────┴──┼── reboot ◀─────────────┤
                                   │                           └────────────────────────┘
    STOPPED ◀── kill / release ── any; STOPPING ◀── shutdown ── RUNNING | READY ──▶ STOPPED
    STOPPED | FAILED ──launch──▶ LAUNCHING  (a machine can always be started again)
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where a machine is in its lifecycle (``machine.state``)."""

    CREATED = "created"  #: nothing launched yet
    LAUNCHING = "launching"  #: preparing files, spawning QEMU, attaching channels (guest paused)
    RUNNING = "running"  #: the guest runs; its backdoor shell has not answered (yet)
    READY = "ready"  #: the backdoor shell answered and the per-boot set-up succeeded
    STOPPING = "stopping"  #: a clean power-off was requested; waiting for QEMU to exit
    STOPPED = "stopped"  #: QEMU is gone because we asked (shutdown, kill, release)
    FAILED = "failed"  #: the launch failed, or QEMU died when it should have been running


ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.LAUNCHING, State.STOPPED}),
    State.LAUNCHING: frozenset({State.RUNNING, State.FAILED, State.STOPPED}),
    State.RUNNING: frozenset({State.READY, State.STOPPING, State.STOPPED, State.FAILED}),
    State.READY: frozenset({State.RUNNING, State.STOPPING, State.STOPPED, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset({State.LAUNCHING, State.STOPPED}),
    State.FAILED: frozenset({State.LAUNCHING, State.STOPPED, State.FAILED}),
}
ALIVE = frozenset({State.LAUNCHING, State.RUNNING, State.READY, State.STOPPING})
