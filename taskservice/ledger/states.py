"""The invocation state machine: the legal moves between the statuses of taskservice.statuses."""
from __future__ import annotations

from taskservice.errors import IllegalTransition
from taskservice.statuses import TERMINAL, WAITING, Status

__all__ = ["ALLOWED", "TERMINAL", "WAITING", "Status", "check_transition"]


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

