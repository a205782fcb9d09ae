"""The contract's vocabulary (design §2): invocation statuses and failure conditions, spelled exactly as Function
Compute spells them. The one home of these names: the ledger's state machine, the API, the CLI, the console and the
handler's context all take them from here, so this module imports nothing of the project but its errors' root."""
from __future__ import annotations

import enum


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


class Condition(enum.StrEnum):
    """Why an invocation failed, as the destination record's requestContext.condition says it. A success record
    carries SUCCESS_CONDITION ("") instead."""

    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    STOPPED = "Stopped"
    INVALID = "Invalid"


SUCCESS_CONDITION = ""
FAILURE_CONDITIONS: tuple[str, ...] = tuple(c.value for c in Condition)
