"""The run state machine: one table of allowed transitions and pure functions over it.

Every change of a run's state goes through :func:`move`, which checks the table; the sets the
store needs (terminal, unfinished) are derived from the table, never listed again.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "UNFINISHED_STATES",
    "IllegalTransitionError",
    "RunState",
    "Stateful",
    "can_transition",
    "check_transition",
    "move",
]


class RunState(enum.IntEnum):
    """Where a run is in its life; the values are those of ``failhook.v1.RunState``."""

    PENDING = 1
    RUNNING = 2
    SLEEPING = 3
    SUCCEEDED = 4
    FAILED = 5
    DEAD_LETTERED = 6
    CANCELED = 7
    PARKED = 8


_S = RunState

#: Every allowed move. RUNNING -> RUNNING records a step or a failed attempt; FAILED is the
#: failure path (the hook is being delivered) that always ends in DEAD_LETTERED. PARKED waits for
#: its target (breaker open, target paused): it is left for RUNNING when the run is released (a
#: released run whose probe fails parks again, PARKED -> PARKED) or for CANCELED. A run that
#: wakes from a sleep while its target is parked parks straight from SLEEPING. A run past its
#: deadline fails from wherever it waits (PENDING, SLEEPING, PARKED too).
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.FAILED, _S.PARKED, _S.CANCELED}),
    _S.RUNNING: frozenset({_S.RUNNING, _S.SLEEPING, _S.SUCCEEDED, _S.FAILED, _S.PARKED, _S.CANCELED}),
    _S.SLEEPING: frozenset({_S.RUNNING, _S.FAILED, _S.PARKED, _S.CANCELED}),
    _S.PARKED: frozenset({_S.RUNNING, _S.FAILED, _S.PARKED, _S.CANCELED}),
    _S.FAILED: frozenset({_S.DEAD_LETTERED}),
    _S.SUCCEEDED: frozenset(),
    _S.DEAD_LETTERED: frozenset(),
    _S.CANCELED: frozenset(),
}

#: States a run never leaves.
TERMINAL_STATES = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
#: States a run is still in motion in (driven, waiting, or delivering its hook).
UNFINISHED_STATES = frozenset(s for s in TRANSITIONS if s not in TERMINAL_STATES)


class IllegalTransitionError(Exception):
    """A move the state machine does not allow (a bug, or a stale view of the run)."""


def can_transition(current: RunState, target: RunState) -> bool:
    """Tell whether a run in ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]


def check_transition(current: RunState, target: RunState) -> None:
    """Raise :class:`IllegalTransitionError` unless the move is allowed."""
    if not can_transition(current, target):
        raise IllegalTransitionError(f"run cannot move from {current.name} to {target.name}")


class Stateful(Protocol):
    """Anything with a run state (a run)."""

    state: RunState


def move(subject: Stateful, target: RunState) -> None:
    """Move ``subject`` to ``target`` or raise :class:`IllegalTransitionError` (the one way to move)."""
    check_transition(subject.state, target)
    subject.state = target
