"""Ledger tables. Schema changes go through Alembic (migrations/); tests/migration checks the two agree."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskservice.ledger.states import Status

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}

# SQLite has no BIGINT autoincrement; INTEGER PRIMARY KEY is its rowid and just as wide.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on Postgres (timestamptz) and SQLite (naive text) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


StatusColumn = Enum(Status, name="invocation_status", values_callable=lambda e: [m.value for m in e],
                    native_enum=True, validate_strings=True, length=16)


class FunctionRow(Base):
    __tablename__ = "functions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(256))
    timeout_s: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    max_event_age_s: Mapped[int] = mapped_column(Integer)
    on_success: Mapped[str | None] = mapped_column(String(2048))
    on_failure: Mapped[str | None] = mapped_column(String(2048))
    concurrency: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InvocationRow(Base):
    __tablename__ = "invocations"
    __table_args__ = (
        UniqueConstraint("function", "invocation_id", name="uq_invocations_function_invocation_id"),
        Index("ix_invocations_status_lease", "status", "lease_expires_at"),
        Index("ix_invocations_function_id", "function", "id"),
        Index("ix_invocations_created_at", "created_at"),
        # The console's list and per-status counts walk these newest-first, whatever the filter.
        Index("ix_invocations_status_id", "status", "id"),
        # The reaper counts and orders waiting invocations by when their doorbell was rung (silent doorbells).
        Index("ix_invocations_queue_status_dispatched", "queue", "status", "dispatched_at"),
        Index("ix_invocations_function_status_id", "function", "status", "id"),
        # The console's invocation-id prefix filter (LIKE 'abc%'): pattern ops so Postgres can range-scan it under
        # any collation; on SQLite a plain index.
        Index("ix_invocations_invocation_id_pattern", "invocation_id",
              postgresql_ops={"invocation_id": "varchar_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    function: Mapped[str] = mapped_column(String(64))
    invocation_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[Status] = mapped_column(StatusColumn)
    payload: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(128))
    condition: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(256))
    progress_percent: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(String(1024))
    log_lines: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A replay (of a dead letter or an external failure record) names the request it re-runs, for the console.
    replay_of: Mapped[str | None] = mapped_column(String(64))
    # Fan-out: a child submitted through context.submit names its parent, so stopping the parent reaches it.
    parent_pk: Mapped[int | None] = mapped_column(BigId, ForeignKey("invocations.id", ondelete="SET NULL"),
                                                  index=True)
    # A manual retry starts a new run: its retries are counted from retry_base and its event age from resubmitted_at.
    retry_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resubmitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The broker queue its doorbells go to: a reaper compares only its own queue's depth with its own invocations.
    queue: Mapped[str | None] = mapped_column(String(200))
    # A flow step's invocation names its execution: its terminal transition wakes the flow engine (flow_wakeups).
    execution_pk: Mapped[int | None] = mapped_column(BigId)


class TransitionRow(Base):
    """Append-only: one row per status change, never updated."""

    __tablename__ = "invocation_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    invocation_pk: Mapped[int] = mapped_column(ForeignKey("invocations.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[Status | None] = mapped_column(StatusColumn)
    to_status: Mapped[Status] = mapped_column(StatusColumn)
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(1024), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class LogLineRow(Base):
    __tablename__ = "invocation_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    invocation_pk: Mapped[int] = mapped_column(ForeignKey("invocations.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class DeliveryRow(Base):
    """Transactional outbox: written with the terminal transition, delivered by the relay at least once."""

    __tablename__ = "destination_deliveries"
    __table_args__ = (
        Index("ix_destination_deliveries_status_next", "status", "next_attempt_at"),
        # The relay's claim walks pending rows only; without this it filters every delivered row kept for retention.
        Index("ix_destination_deliveries_pending", "id", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    invocation_pk: Mapped[int | None] = mapped_column(BigId, index=True)
    function: Mapped[str] = mapped_column(String(64))
    invocation_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(36))
    destination: Mapped[str] = mapped_column(String(2048))
    condition: Mapped[str] = mapped_column(String(32))
    record: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(256))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeadLetterRow(Base):
    """Every failure record, kept for the console and replay whether or not a failure destination is set."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_function_id", "function", "id"),
                      Index("ix_dead_letters_created_at", "created_at"),
                      Index("ix_dead_letters_function_invocation_id", "function", "invocation_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    invocation_pk: Mapped[int | None] = mapped_column(BigId, index=True)
    function: Mapped[str] = mapped_column(String(64))
    invocation_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(36))
    condition: Mapped[str] = mapped_column(String(32), index=True)
    error_type: Mapped[str | None] = mapped_column(String(128))
    record: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TriggerRow(Base):
    """A trigger: which events invoke which function. `kind` kafka uses the topic columns; timer, storage and queue
    keep their own settings as JSON in `config`, and what their processes last did (next tick, last event,
    backlog) in `state`."""

    __tablename__ = "triggers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    function: Mapped[str] = mapped_column(String(64))
    topics: Mapped[str] = mapped_column(Text)  # JSON list of topic names
    consumer_group: Mapped[str] = mapped_column(String(255))
    batch_size: Mapped[int] = mapped_column(Integer)
    batching_window_s: Mapped[float] = mapped_column(Float)
    starting_position: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(String(1024), default="")
    lag: Mapped[str | None] = mapped_column(Text)  # JSON, written by the ingest processes every few seconds
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16), server_default="kafka")
    config: Mapped[str | None] = mapped_column(Text)  # JSON: the kind's own settings (not kafka)
    state: Mapped[str | None] = mapped_column(Text)  # JSON: written by the scheduler, consumer, storage events


class QueueMessageRow(Base):
    """The messages of a queue trigger already in the ledger, written in the transaction of their batch's
    invocation: a message redelivered after a consumer crash is found here and acknowledged, never invoked
    twice. Goes with its invocation (retention)."""

    __tablename__ = "queue_messages"

    trigger: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    invocation_pk: Mapped[int] = mapped_column(BigId, ForeignKey("invocations.id", ondelete="CASCADE"), index=True)


class ApiTokenRow(Base):
    """An access token for the API and the console. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FlowRow(Base):
    """A deployed flow: its definition as written (`source`) and as parsed (`definition`, canonical JSON)."""

    __tablename__ = "flows"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    definition: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(1024), default="")
    on_success: Mapped[str | None] = mapped_column(String(2048))
    on_failure: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExecutionRow(Base):
    """One run of a flow. Keeps its own copy of the definition, so redeploying a flow never changes a run."""

    __tablename__ = "flow_executions"
    __table_args__ = (
        UniqueConstraint("flow", "name", name="uq_flow_executions_flow_name"),
        Index("ix_flow_executions_flow_id", "flow", "id"),
        Index("ix_flow_executions_status_id", "status", "id"),
        Index("ix_flow_executions_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    definition: Mapped[str] = mapped_column(Text)
    on_success: Mapped[str | None] = mapped_column(String(2048))
    on_failure: Mapped[str | None] = mapped_column(String(2048))
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    redrives: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)


class FrameRow(Base):
    """Where one thread of an execution stands: the top level (scope ''), a parallel branch ('P/0') or a foreach
    iteration ('F/3'). `step` is the step it is at; `entered` whether that step has been started; `state` the
    frame's JSON state."""

    __tablename__ = "flow_frames"
    __table_args__ = (UniqueConstraint("execution_pk", "scope", name="uq_flow_frames_execution_pk_scope"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_pk: Mapped[int] = mapped_column(BigId, ForeignKey("flow_executions.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(64))
    entered: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(128))


class StepRunRow(Base):
    """The latest run of one step path of an execution ('encode', 'segments/3/transcode'): what the API lists as
    `steps`. A step entered again (a goto loop, a redrive) counts a new `visit`; its invocation ids derive from
    execution, path, visit and attempt, so re-processing an event can never submit twice."""

    __tablename__ = "flow_steps"
    __table_args__ = (UniqueConstraint("execution_pk", "path", name="uq_flow_steps_execution_pk_path"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_pk: Mapped[int] = mapped_column(BigId, ForeignKey("flow_executions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    visit: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    items: Mapped[int | None] = mapped_column(Integer)
    invocation_pk: Mapped[int | None] = mapped_column(BigId, index=True)
    function: Mapped[str | None] = mapped_column(String(64))
    invocation_id: Mapped[str | None] = mapped_column(String(128))
    input: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(128))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FlowEventRow(Base):
    """An execution's history, append-only."""

    __tablename__ = "flow_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_pk: Mapped[int] = mapped_column(BigId, ForeignKey("flow_executions.id", ondelete="CASCADE"),
                                              index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(512), default="")
    detail: Mapped[str | None] = mapped_column(Text)


class WakeupRow(Base):
    """Work for the flow engine: an execution to look at once `due_at` has come. Written by a step invocation's
    terminal transition (same transaction: the outbox principle), by starts, stops and redrives, and for durable
    timers (wait steps, retry intervals, execution timeouts)."""

    __tablename__ = "flow_wakeups"
    __table_args__ = (Index("ix_flow_wakeups_due_at", "due_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_pk: Mapped[int] = mapped_column(BigId, ForeignKey("flow_executions.id", ondelete="CASCADE"),
                                              index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Core table handles for the ledger's set-based statements (conditional UPDATEs, bulk inserts).
FUNCTIONS = cast(Table, FunctionRow.__table__)
INVOCATIONS = cast(Table, InvocationRow.__table__)
TRANSITIONS = cast(Table, TransitionRow.__table__)
LOGS = cast(Table, LogLineRow.__table__)
DELIVERIES = cast(Table, DeliveryRow.__table__)
DEAD_LETTERS = cast(Table, DeadLetterRow.__table__)
TRIGGERS = cast(Table, TriggerRow.__table__)
API_TOKENS = cast(Table, ApiTokenRow.__table__)
QUEUE_MESSAGES = cast(Table, QueueMessageRow.__table__)
FLOWS = cast(Table, FlowRow.__table__)
EXECUTIONS = cast(Table, ExecutionRow.__table__)
FRAMES = cast(Table, FrameRow.__table__)
STEP_RUNS = cast(Table, StepRunRow.__table__)
FLOW_EVENTS = cast(Table, FlowEventRow.__table__)
WAKEUPS = cast(Table, WakeupRow.__table__)
