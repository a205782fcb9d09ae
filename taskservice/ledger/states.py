"""The invocation state machine: status names exactly as Function Compute spells them, and the legal moves."""
from __future__ import annotations

import enum

from taskservice.errors import IllegalTransition


class Status(enum.StrEnum):
    ENQUEUED = "Enqueued"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    EXPIRED = "Expired"
    INVALID = "Invalid"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.STOPPED, Status.EXPIRED, Status.INVALID})
WAITING = frozenset({Status.ENQUEUED, Status.RETRYING})
_ENDINGS_BEFORE_START = {Status.RUNNING, Status.STOPPED, Status.EXPIRED, Status.INVALID}

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.ENQUEUED: frozenset(_ENDINGS_BEFORE_START),
    Status.RETRYING: frozenset(_ENDINGS_BEFORE_START),
    # Running -> Retrying also covers a worker that died: the reaper hands the invocation to a new attempt.
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.RETRYING, Status.STOPPING, Status.INVALID,
                               Status.EXPIRED}),
    Status.STOPPING: frozenset({Status.STOPPED}),
    # A terminal invocation only moves again when someone explicitly retries it.
    **{status: frozenset({Status.ENQUEUED}) for status in TERMINAL},
}


def check_transition(current: Status, target: Status) -> None:
    """Raise IllegalTransition unless the state machine allows current -> target."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"an invocation cannot go from {current.value} to {target.value}")


def sources_of(target: Status) -> frozenset[Status]:
    """Every status from which target is reachable in one step; used to build conditional UPDATEs."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)
