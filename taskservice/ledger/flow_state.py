"""The flow engine's working set: one execution's frames, step runs and step invocations, loaded under a lock and
written back in the same transaction.

`lock_due` is the engine's claim: it locks the execution row (SKIP LOCKED on Postgres, so several engines share the
work without waiting on each other; SQLite serialises writers) and deletes the wake-ups that have come due *before*
reading anything, so a step that ends while the engine works leaves a wake-up of its own and is seen next time.
Everything the engine then decides commits at once or not at all: a killed engine loses and doubles nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from taskservice.ledger.flows import EXECUTION_ENDED, SUCCEEDED, dumps, loads
from taskservice.ledger.models import EXECUTIONS, FRAMES, INVOCATIONS, STEP_RUNS, WAKEUPS
from taskservice.ledger.queries import starts_with
from taskservice.ledger.states import Status

LIVE_STEP = ("Running", "Waiting", "Retrying")


UNLOADED: Any = type("Unloaded", (), {"__repr__": lambda self: "<not loaded>"})()


@dataclass
class FrameState:
    scope: str
    status: str
    step: str | None
    entered: bool
    state: Any
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    id: int | None = None
    dirty: bool = False


@dataclass
class StepState:
    path: str
    type: str
    status: str
    visit: int
    entered_at: datetime
    attempts: int = 0
    items: int | None = None
    invocation_pk: int | None = None
    function: str | None = None
    invocation_id: str | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    due_at: datetime | None = None
    ended_at: datetime | None = None
    id: int | None = None
    dirty: bool = False


@dataclass(frozen=True)
class StepInvocation:
    status: Status
    result: str | None
    error_type: str | None
    error: str | None


@dataclass
class LoadedExecution:
    pk: int
    flow: str
    name: str
    request_id: str
    status: str
    definition: dict[str, Any]
    input_text: str
    on_success: str | None
    on_failure: str | None
    timeout_at: datetime | None
    events: int
    frames: dict[str, FrameState]
    steps: dict[str, StepState]
    invocations: dict[int, StepInvocation]
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    finished_at: datetime | None = None
    dirty: bool = False
    forgotten: set[str] = field(default_factory=set)  # containers re-entered: every frame and step run below goes
    conn: Any = None
    _absent: set[str] = field(default_factory=set)

    def step(self, path: str) -> StepState | None:
        """The step run at `path`: ended runs are not loaded up front (a foreach of 10,000 has 10,000), so one that
        is asked for (a step entered again) is read now."""
        found = self.steps.get(path)
        if found is not None or path in self._absent or self.conn is None:
            return found
        row = self.conn.execute(select(STEP_RUNS).where(STEP_RUNS.c.execution_pk == self.pk,
                                                        STEP_RUNS.c.path == path)).first()
        if row is None:
            self._absent.add(path)
            return None
        self.steps[path] = found = _step_state(row)
        return found

    def load_outputs(self, container: str) -> None:
        """Read the outputs of the succeeded frames directly below a parallel or foreach, which were loaded
        without them: needed only when the container ends."""
        prefix = f"{container}/"
        missing = [scope for scope, frame in self.frames.items()
                   if frame.output is UNLOADED and scope.startswith(prefix) and "/" not in scope[len(prefix):]]
        for start in range(0, len(missing), 1000):
            for row in self.conn.execute(select(FRAMES.c.scope, FRAMES.c.output).where(
                    FRAMES.c.execution_pk == self.pk, FRAMES.c.scope.in_(missing[start:start + 1000]))):
                self.frames[row.scope].output = loads(row.output)


def due_executions(engine: Engine, now: datetime, *, limit: int) -> list[int]:
    """Executions with a wake-up that has come due, the longest-waiting first."""
    with engine.connect() as conn:
        rows = conn.execute(select(WAKEUPS.c.execution_pk).where(WAKEUPS.c.due_at <= now)
                            .group_by(WAKEUPS.c.execution_pk).order_by(func.min(WAKEUPS.c.due_at))
                            .limit(limit)).all()
    return [r.execution_pk for r in rows]


def lock_due(conn: Connection, pk: int, now: datetime) -> LoadedExecution | None:
    """Lock one execution and take its due wake-ups; None when another engine holds it, when the wake-ups were
    already taken, or when the execution has ended (its wake-ups are dropped)."""
    row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == pk).with_for_update(skip_locked=True)).first()
    if row is None:
        return None
    taken = conn.execute(delete(WAKEUPS).where(WAKEUPS.c.execution_pk == pk, WAKEUPS.c.due_at <= now)).rowcount
    if row.status in EXECUTION_ENDED:
        conn.execute(delete(WAKEUPS).where(WAKEUPS.c.execution_pk == pk))
        return None
    if not taken:
        return None
    # Running, failed and stopped frames whole; succeeded ones only by scope (their state is never needed again,
    # their output only when their parallel or foreach ends: LoadedExecution.load_outputs).
    frames = {r.scope: FrameState(id=r.id, scope=r.scope, status=r.status, step=r.step, entered=r.entered,
                                  state=json.loads(r.state), output=loads(r.output), error=r.error,
                                  error_type=r.error_type)
              for r in conn.execute(select(FRAMES).where(FRAMES.c.execution_pk == pk,
                                                         FRAMES.c.status != SUCCEEDED))}
    for r in conn.execute(select(FRAMES.c.id, FRAMES.c.scope).where(FRAMES.c.execution_pk == pk,
                                                                    FRAMES.c.status == SUCCEEDED)):
        frames[r.scope] = FrameState(id=r.id, scope=r.scope, status=SUCCEEDED, step=None, entered=True,
                                     state=None, output=UNLOADED)
    # Live step runs, and the runs of the steps the loaded frames stand at (a container's, a failed step's).
    current = [f"{f.scope}/{f.step}" if f.scope else str(f.step) for f in frames.values() if f.step is not None]
    rows = list(conn.execute(select(STEP_RUNS).where(STEP_RUNS.c.execution_pk == pk,
                                                     STEP_RUNS.c.status.in_(LIVE_STEP))))
    for start in range(0, len(current), 1000):
        rows += conn.execute(select(STEP_RUNS).where(STEP_RUNS.c.execution_pk == pk,
                                                     STEP_RUNS.c.path.in_(current[start:start + 1000]),
                                                     STEP_RUNS.c.status.not_in(LIVE_STEP)))
    steps = {r.path: _step_state(r) for r in rows}
    pks = [s.invocation_pk for s in steps.values() if s.invocation_pk is not None and s.status in LIVE_STEP]
    invocations: dict[int, StepInvocation] = {}
    for start in range(0, len(pks), 1000):
        for r in conn.execute(select(INVOCATIONS.c.id, INVOCATIONS.c.status, INVOCATIONS.c.result,
                                     INVOCATIONS.c.error_type, INVOCATIONS.c.error)
                              .where(INVOCATIONS.c.id.in_(pks[start:start + 1000]))):
            invocations[r.id] = StepInvocation(status=Status(r.status), result=r.result, error_type=r.error_type,
                                               error=r.error)
    return LoadedExecution(pk=pk, flow=row.flow, name=row.name, request_id=row.request_id, status=row.status,
                           definition=json.loads(row.definition), input_text=row.input, on_success=row.on_success,
                           on_failure=row.on_failure, timeout_at=row.timeout_at, events=row.events, frames=frames,
                           steps=steps, invocations=invocations, conn=conn)


def save(conn: Connection, ex: LoadedExecution, now: datetime) -> None:
    """Write back what changed: forgotten descendants deleted, dirty frames and step runs inserted or updated,
    and the execution's own fields."""
    for container in ex.forgotten:
        conn.execute(delete(FRAMES).where(FRAMES.c.execution_pk == ex.pk, starts_with(FRAMES.c.scope, f"{container}/")))
        conn.execute(delete(STEP_RUNS).where(STEP_RUNS.c.execution_pk == ex.pk,
                                             starts_with(STEP_RUNS.c.path, f"{container}/")))
    new_frames, new_steps = [], []
    for frame in ex.frames.values():
        if not frame.dirty:
            continue
        values: dict[str, Any] = {
            "status": frame.status, "step": frame.step, "entered": frame.entered, "state": dumps(frame.state),
            "output": None if frame.output is None or frame.output is UNLOADED else dumps(frame.output),
            "error": frame.error, "error_type": frame.error_type}
        if frame.id is None:
            new_frames.append({"execution_pk": ex.pk, "scope": frame.scope, **values})
        else:
            conn.execute(update(FRAMES).where(FRAMES.c.id == frame.id).values(**values))
    for step in ex.steps.values():
        if not step.dirty:
            continue
        values = {"type": step.type, "status": step.status, "visit": step.visit, "attempts": step.attempts,
                  "items": step.items, "invocation_pk": step.invocation_pk, "function": step.function,
                  "invocation_id": step.invocation_id, "input": None if step.input is None else dumps(step.input),
                  "output": None if step.output is None else dumps(step.output), "error": step.error,
                  "error_type": step.error_type, "due_at": step.due_at, "entered_at": step.entered_at,
                  "ended_at": step.ended_at}
        if step.id is None:
            new_steps.append({"execution_pk": ex.pk, "path": step.path, **values})
        else:
            conn.execute(update(STEP_RUNS).where(STEP_RUNS.c.id == step.id).values(**values))
    if new_frames:
        conn.execute(insert(FRAMES), new_frames)
    if new_steps:
        conn.execute(insert(STEP_RUNS), new_steps)
    if ex.dirty:
        conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == ex.pk).values(
            status=ex.status, output=None if ex.output is None else dumps(ex.output), error=ex.error,
            error_type=ex.error_type, finished_at=ex.finished_at, updated_at=now))


def _step_state(r: Any) -> StepState:
    return StepState(id=r.id, path=r.path, type=r.type, status=r.status, visit=r.visit, attempts=r.attempts,
                     items=r.items, invocation_pk=r.invocation_pk, function=r.function, invocation_id=r.invocation_id,
                     input=loads(r.input), output=loads(r.output), error=r.error, error_type=r.error_type,
                     due_at=r.due_at, entered_at=r.entered_at, ended_at=r.ended_at)
