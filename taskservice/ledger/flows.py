"""Flows in the ledger: deployed definitions, executions and what the API and console read of them.

The engine's own reads and writes of a running execution (frames, step runs, wake-ups) are in `flow_state`; this
module holds what callers do: deploy, start, stop, redrive, list, describe. Starting, stopping and redriving each
write a wake-up in their own transaction, so the engine learns of them the way it learns of an ended step.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskservice.clock import utcnow
from taskservice.errors import DuplicateExecution, ExecutionNotFound, ExecutionStateConflict, FlowNotFound
from taskservice.flowdef import parse_definition
from taskservice.ledger.models import EXECUTIONS, FLOW_EVENTS, FLOWS, FRAMES, STEP_RUNS, WAKEUPS
from taskservice.ledger.queries import newest_first, starts_with

RUNNING, SUCCEEDED, FAILED, STOPPING, STOPPED, TIMED_OUT = (
    "Running", "Succeeded", "Failed", "Stopping", "Stopped", "TimedOut")
EXECUTION_STATUSES = (RUNNING, SUCCEEDED, FAILED, STOPPING, STOPPED, TIMED_OUT)
EXECUTION_ENDED = frozenset({SUCCEEDED, FAILED, STOPPED, TIMED_OUT})
REDRIVABLE = frozenset({FAILED, STOPPED, TIMED_OUT})


@dataclass(frozen=True)
class Flow:
    name: str
    source: str
    definition: dict[str, Any]
    description: str
    on_success: str | None
    on_failure: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Flow:
        m = row._mapping
        return cls(name=m["name"], source=m["source"], definition=json.loads(m["definition"]),
                   description=m["description"], on_success=m["on_success"], on_failure=m["on_failure"],
                   created_at=m["created_at"], updated_at=m["updated_at"])


@dataclass(frozen=True)
class Execution:
    pk: int
    flow: str
    name: str
    request_id: str
    status: str
    definition: dict[str, Any]
    input: Any
    output: Any
    error: str | None
    error_type: str | None
    started_at: datetime
    finished_at: datetime | None
    timeout_at: datetime | None
    redrives: int
    events: int

    @classmethod
    def from_row(cls, row: Any) -> Execution:
        m = row._mapping
        return cls(pk=m["id"], flow=m["flow"], name=m["name"], request_id=m["request_id"], status=m["status"],
                   definition=json.loads(m["definition"]), input=json.loads(m["input"]),
                   output=None if m["output"] is None else json.loads(m["output"]), error=m["error"],
                   error_type=m["error_type"], started_at=m["started_at"], finished_at=m["finished_at"],
                   timeout_at=m["timeout_at"], redrives=m["redrives"], events=m["events"])


@dataclass(frozen=True)
class StepRun:
    path: str
    type: str
    status: str
    visit: int
    attempts: int
    items: int | None
    function: str | None
    invocation_id: str | None
    input: Any
    output: Any
    error: str | None
    error_type: str | None
    entered_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> StepRun:
        m = row._mapping
        return cls(path=m["path"], type=m["type"], status=m["status"], visit=m["visit"], attempts=m["attempts"],
                   items=m["items"], function=m["function"], invocation_id=m["invocation_id"],
                   input=loads(m["input"]), output=loads(m["output"]), error=m["error"],
                   error_type=m["error_type"], entered_at=m["entered_at"], ended_at=m["ended_at"])


@dataclass(frozen=True)
class FlowEvent:
    id: int
    at: datetime
    type: str
    path: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ExecutionFilter:
    flow: str | None = None
    statuses: tuple[str, ...] = ()
    prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def loads(text: str | None) -> Any:
    """JSON text of a nullable column back to its value (None stays None): the pair of `dumps`."""
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def add_event(conn: Connection, execution_pk: int, type_: str, path: str = "", detail: dict[str, Any] | None = None,
              *, at: datetime | None = None) -> None:
    add_events(conn, execution_pk, [(at or utcnow(), type_, path, detail or {})])


def add_events(conn: Connection, execution_pk: int, events: list[tuple[datetime, str, str, dict[str, Any]]]) -> None:
    """Append a batch of (at, type, path, detail) events: the engine writes one batch per advance."""
    if events:
        conn.execute(insert(FLOW_EVENTS), [{"execution_pk": execution_pk, "at": at, "type": type_, "path": path,
                                            "detail": None if not detail else dumps(detail)}
                                           for at, type_, path, detail in events])
        conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == execution_pk)
                     .values(events=EXECUTIONS.c.events + len(events)))


def wake(conn: Connection, execution_pk: int, *, at: datetime | None = None) -> None:
    conn.execute(insert(WAKEUPS).values(execution_pk=execution_pk, due_at=at or utcnow()))


def purge_executions(conn: Connection, before: datetime, *, batch: int) -> int:
    """Drop executions that ended before `before` with everything they own (the retention of invocations applies
    to executions too). Children are deleted explicitly: SQLite does not enforce ON DELETE CASCADE here."""
    ended = [r.id for r in conn.execute(select(EXECUTIONS.c.id).where(EXECUTIONS.c.status.in_(EXECUTION_ENDED),
                                                                    EXECUTIONS.c.finished_at < before)
                                        .order_by(EXECUTIONS.c.id).limit(batch))]
    if not ended:
        return 0
    for table in (WAKEUPS, FLOW_EVENTS, STEP_RUNS, FRAMES):
        conn.execute(delete(table).where(table.c.execution_pk.in_(ended)))
    return int(conn.execute(delete(EXECUTIONS).where(EXECUTIONS.c.id.in_(ended))).rowcount)


class FlowStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- definitions ----------------------------------------------------------------------------------------------
    def put(self, name: str, *, source: str, definition: dict[str, Any], description: str,
            on_success: str | None, on_failure: str | None) -> tuple[Flow, bool]:
        """Create or replace a flow; returns it and whether it was created. Running executions keep the
        definition they started with."""
        now = utcnow()
        values = {"source": source, "definition": dumps(definition), "description": description,
                  "on_success": on_success, "on_failure": on_failure, "updated_at": now}
        with self.engine.begin() as conn:
            updated = conn.execute(update(FLOWS).where(FLOWS.c.name == name).values(**values)).rowcount
            if not updated:
                conn.execute(insert(FLOWS).values(name=name, created_at=now, **values))
            row = conn.execute(select(FLOWS).where(FLOWS.c.name == name)).one()
        return Flow.from_row(row), not updated

    def get(self, name: str) -> Flow:
        with self.engine.connect() as conn:
            row = conn.execute(select(FLOWS).where(FLOWS.c.name == name)).first()
        if row is None:
            raise FlowNotFound(f"flow {name!r} does not exist")
        return Flow.from_row(row)

    def all(self) -> list[Flow]:
        with self.engine.connect() as conn:
            return [Flow.from_row(r) for r in conn.execute(select(FLOWS).order_by(FLOWS.c.name))]

    def delete(self, name: str) -> None:
        """Executions already started run to their end: they hold their own copy of the definition."""
        with self.engine.begin() as conn:
            if not conn.execute(delete(FLOWS).where(FLOWS.c.name == name)).rowcount:
                raise FlowNotFound(f"flow {name!r} does not exist")

    def execution_counts(self) -> dict[str, dict[str, int]]:
        """Per flow, how many executions are in each status: the flows list of the console and CLI."""
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(EXECUTIONS.c.flow, EXECUTIONS.c.status, func.count())
                                    .group_by(EXECUTIONS.c.flow, EXECUTIONS.c.status)):
                counts.setdefault(row[0], {})[row[1]] = int(row[2])
        return counts

    # --- executions -----------------------------------------------------------------------------------------------
    def start(self, flow: Flow, name: str, input_text: str, *, first_step: str, timeout_s: int | None) -> Execution:
        """Record a new execution, its top-level frame at the first step, ExecutionStarted, and a wake-up for the
        engine, in one transaction. DuplicateExecution when the name is taken in this flow."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                pk = conn.execute(insert(EXECUTIONS).values(
                    flow=flow.name, name=name, request_id=str(uuid.uuid4()), status=RUNNING,
                    definition=dumps(flow.definition), on_success=flow.on_success, on_failure=flow.on_failure,
                    input=input_text, started_at=now, updated_at=now, redrives=0, events=0,
                    timeout_at=None if timeout_s is None else now + timedelta(seconds=timeout_s))
                    .returning(EXECUTIONS.c.id)).scalar_one()
                conn.execute(insert(FRAMES).values(execution_pk=pk, scope="", status=RUNNING, step=first_step,
                                                   entered=False, state=input_text))
                add_event(conn, pk, "ExecutionStarted", detail={"input": json.loads(input_text)}, at=now)
                wake(conn, pk, at=now)
                if timeout_s is not None:
                    wake(conn, pk, at=now + timedelta(seconds=timeout_s))
        except IntegrityError:
            existing = self.find_execution(flow.name, name)
            if existing is None:
                raise
            raise DuplicateExecution(f"execution {name!r} of flow {flow.name!r} already exists "
                                     f"({existing.status})", existing={"pk": existing.pk}) from None
        return self.get_execution_by_pk(pk)

    def start_named(self, flow_name: str, name: str, input_text: str) -> Execution:
        """Start an execution of the deployed flow `flow_name` at its first step: what the API's POST does, and
        what a handler's `context.start_execution` does (the old media parents start their flows this way)."""
        flow = self.get(flow_name)
        definition = parse_definition(flow.definition)
        return self.start(flow, name, input_text, first_step=definition.steps[0].name, timeout_s=definition.timeout_s)

    def find_execution(self, flow: str, name: str) -> Execution | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.flow == flow, EXECUTIONS.c.name == name)).first()
        return None if row is None else Execution.from_row(row)

    def get_execution(self, flow: str, name: str) -> Execution:
        found = self.find_execution(flow, name)
        if found is None:
            raise ExecutionNotFound(f"execution {name!r} of flow {flow!r} does not exist")
        return found

    def get_execution_by_pk(self, pk: int) -> Execution:
        with self.engine.connect() as conn:
            row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == pk)).first()
        if row is None:
            raise ExecutionNotFound(f"execution {pk} does not exist")
        return Execution.from_row(row)

    def list_executions(self, flt: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
                        ) -> tuple[list[Execution], str | None]:
        """Newest first, keyset-paginated like invocations (newest_first)."""
        c = EXECUTIONS.c
        rows, next_cursor = newest_first(self.engine, EXECUTIONS, [
            c.flow == flt.flow if flt.flow else None,
            c.status.in_(flt.statuses) if flt.statuses else None,
            starts_with(c.name, flt.prefix) if flt.prefix else None,
            c.started_at >= flt.since if flt.since else None,
            c.started_at < flt.until if flt.until else None], limit=limit, cursor=cursor)
        return [Execution.from_row(r) for r in rows], next_cursor

    def steps(self, execution_pk: int) -> list[StepRun]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(STEP_RUNS).where(STEP_RUNS.c.execution_pk == execution_pk)
                                .order_by(STEP_RUNS.c.entered_at, STEP_RUNS.c.id)).all()
        return [StepRun.from_row(r) for r in rows]

    def frame_statuses(self, execution_pk: int) -> dict[str, str]:
        """Scope → status of every frame below the top level (`P/0`, `F/3`): how the console counts a foreach's
        iterations and colours a parallel's branches without reading their states."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(FRAMES.c.scope, FRAMES.c.status)
                                .where(FRAMES.c.execution_pk == execution_pk, FRAMES.c.scope != "")).all()
        return {r.scope: r.status for r in rows}

    def history(self, execution_pk: int, *, after: int = 0, limit: int = 1000) -> list[FlowEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(FLOW_EVENTS).where(FLOW_EVENTS.c.execution_pk == execution_pk,
                                                          FLOW_EVENTS.c.id > after)
                                .order_by(FLOW_EVENTS.c.id).limit(limit)).all()
        return [FlowEvent(id=r.id, at=r.at, type=r.type, path=r.path, detail=loads(r.detail) or {}) for r in rows]

    def request_stop(self, execution: Execution) -> Execution:
        """Running → Stopping; the engine stops the running step invocations (their process trees are killed by
        their workers) and ends the execution Stopped once none is left running. 409 when it has ended."""
        with self.engine.begin() as conn:
            moved = conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == execution.pk,
                                                          EXECUTIONS.c.status == RUNNING)
                                 .values(status=STOPPING, updated_at=utcnow())).rowcount
            if not moved:
                raise ExecutionStateConflict(self._state_message(conn, execution.pk, "stopped", "is running"))
            add_event(conn, execution.pk, "ExecutionStopRequested")
            wake(conn, execution.pk)
        return self.get_execution_by_pk(execution.pk)

    def redrive(self, execution: Execution) -> Execution:
        """Failed / Stopped / TimedOut → Running again at the steps that did not succeed; the engine re-enters
        them (as new visits, so new invocation ids) and keeps every succeeded step's output. 409 otherwise."""
        now = utcnow()
        timeout_s = execution.definition.get("timeoutSeconds")
        with self.engine.begin() as conn:
            moved = conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == execution.pk,
                                                          EXECUTIONS.c.status.in_(REDRIVABLE))
                                 .values(status=RUNNING, updated_at=now, finished_at=None, error=None,
                                         error_type=None, output=None, redrives=EXECUTIONS.c.redrives + 1,
                                         timeout_at=None if timeout_s is None
                                         else now + timedelta(seconds=timeout_s))).rowcount
            if not moved:
                raise ExecutionStateConflict(self._state_message(conn, execution.pk, "redriven",
                                                                 "has Failed, Stopped or TimedOut"))
            resumed = self._resume_frames(conn, execution.pk)
            add_event(conn, execution.pk, "ExecutionRedriven",
                      detail={"redrive": execution.redrives + 1, "resumed": resumed})
            wake(conn, execution.pk, at=now)
            if timeout_s is not None:
                wake(conn, execution.pk, at=now + timedelta(seconds=timeout_s))
        return self.get_execution_by_pk(execution.pk)

    @staticmethod
    def _resume_frames(conn: Connection, pk: int) -> list[str]:
        """Every frame that failed or was stopped runs again from the step it stood at. A leaf step (task, wait,
        fail …) is entered afresh; a parallel or foreach keeps its succeeded branches and iterations and simply
        runs again, so only the branches and iterations that did not succeed (themselves frames) are re-run."""
        frames = conn.execute(select(FRAMES.c.id, FRAMES.c.scope, FRAMES.c.step)
                              .where(FRAMES.c.execution_pk == pk, FRAMES.c.status.in_([FAILED, STOPPED]))).all()
        containers = {r.path for r in conn.execute(
            select(STEP_RUNS.c.path).where(STEP_RUNS.c.execution_pk == pk, STEP_RUNS.c.status.in_([FAILED, STOPPED]),
                                           STEP_RUNS.c.type.in_(["parallel", "foreach"])))}
        for frame in frames:
            path = f"{frame.scope}/{frame.step}" if frame.scope else str(frame.step)
            conn.execute(update(FRAMES).where(FRAMES.c.id == frame.id)
                         .values(status=RUNNING, entered=path in containers, error=None, error_type=None))
        if containers:
            conn.execute(update(STEP_RUNS).where(STEP_RUNS.c.execution_pk == pk, STEP_RUNS.c.path.in_(containers))
                         .values(status=RUNNING, ended_at=None, error=None, error_type=None))
        return sorted(f"{f.scope}/{f.step}" if f.scope else str(f.step) for f in frames)

    @staticmethod
    def _state_message(conn: Connection, pk: int, verb: str, when: str) -> str:
        status = conn.execute(select(EXECUTIONS.c.status).where(EXECUTIONS.c.id == pk)).scalar_one()
        return f"an execution can be {verb} only while it {when}; this one is {status}"
