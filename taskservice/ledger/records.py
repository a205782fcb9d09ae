"""Immutable snapshots the ledger hands out, so no caller can write status behind the manager's back."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskservice.ledger.states import Status


@dataclass(frozen=True)
class Function:
    name: str
    handler: str
    timeout_s: int
    max_retries: int
    max_event_age_s: int
    on_success: str | None
    on_failure: str | None
    concurrency: int | None
    description: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Function:
        return cls(**{name: row._mapping[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Invocation:
    pk: int
    function: str
    invocation_id: str
    request_id: str
    status: Status
    payload: str
    result: str | None
    error: str | None
    error_type: str | None
    condition: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    progress_percent: float | None
    progress_message: str | None
    log_lines: int
    replay_of: str | None = None
    parent_pk: int | None = None
    retry_base: int = 0
    resubmitted_at: datetime | None = None
    execution_pk: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Invocation:
        m = row._mapping
        return cls(pk=m["id"], **{name: m[name] for name in cls.__dataclass_fields__ if name != "pk"})


@dataclass(frozen=True)
class Claim:
    """What a worker needs to run one attempt; returned only to the worker that won the claim."""

    invocation: Invocation
    function: Function

    @property
    def attempt(self) -> int:
        return self.invocation.attempts

    @property
    def max_retries(self) -> int:
        return retries_allowed(self.function.max_retries, self.invocation.execution_pk)


def retries_allowed(function_max_retries: int, execution_pk: int | None) -> int:
    """A flow step's invocation is never retried by its function's max_retries: the step's own retry policy is the
    only one (design §7), so the two cannot multiply."""
    return 0 if execution_pk is not None else function_max_retries


@dataclass(frozen=True)
class Transition:
    from_status: Status | None
    to_status: Status
    attempt: int
    reason: str
    at: datetime


@dataclass(frozen=True)
class LogLine:
    attempt: int
    at: datetime
    level: str
    message: str


@dataclass(frozen=True)
class DeadLetter:
    id: int
    function: str
    invocation_id: str
    request_id: str
    condition: str
    error_type: str | None
    record: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> DeadLetter:
        return cls(**{name: row._mapping[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Page:
    items: list[Invocation]
    next_cursor: str | None
