"""Step and run statuses and the one table of transitions between them."""

from __future__ import annotations

import enum

from ._errors import InvalidTransition


class Status(enum.StrEnum):
    """Where a step (or a whole run) is in its lifecycle."""

    NOT_STARTED = "NOT_STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    RETRY = "RETRY"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in _TERMINAL


# The members as module constants, for the hot path: on Python 3.11 every `Status.X` goes through
# `EnumType.__getattr__` (hundreds of instructions each); a module global is one dict lookup.
NOT_STARTED = Status.NOT_STARTED
IN_PROGRESS = Status.IN_PROGRESS
RETRY = Status.RETRY
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
CANCELLED = Status.CANCELLED

_TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

#: Allowed moves of a step; anything else is a bug in the engine or a corrupt checkpoint.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NOT_STARTED: frozenset({Status.IN_PROGRESS, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset(
        {Status.RETRY, Status.COMPLETED, Status.FAILED, Status.CANCELLED}
    ),
    Status.RETRY: frozenset({Status.IN_PROGRESS, Status.FAILED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def check_transition(current: Status, new: Status) -> Status:
    """Return `new` if a step may move there from `current`, else raise `InvalidTransition`."""
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a step cannot move from {current.value} to {new.value}")
    return new
