"""Ledger: the only code that writes invocation status.

Every status change goes through `_move`, which checks the state machine, updates the row on the condition that its
status is still the one it read (so concurrent writers cannot both win) and appends the transition to the history,
all in one transaction.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from taskservice.clock import utcnow
from taskservice.db import StatementConnection
from taskservice.errors import DuplicateInvocation, FunctionNotFound, InvocationNotFound, NotRetryable
from taskservice.ledger.bulk import NewInvocation, insert_invocations, insert_one
from taskservice.ledger.flows import purge_executions
from taskservice.ledger.models import DEAD_LETTERS, DELIVERIES, FUNCTIONS, INVOCATIONS, LOGS, TRANSITIONS
from taskservice.ledger.moves import INCREMENT, claimed_row, move_row, record_success
from taskservice.ledger.outbox import record_outcome
from taskservice.ledger.queries import LedgerQueries
from taskservice.ledger.records import Claim, Function, Invocation, retries_allowed
from taskservice.ledger.states import TERMINAL, WAITING, Status, check_transition
from taskservice.specs import FunctionConfig
from taskservice.statuses import SUCCESS_CONDITION, Condition

_FUNCTION_COLUMNS = [column.label(f"fn_{column.name}") for column in FUNCTIONS.c]
FUNCTION_CACHE_S = 5.0


def _function_of(row: Any) -> Function:
    """The function of a claim, from the fn_<name> columns its statement read with the invocation."""
    return Function(**{name: row._mapping[f"fn_{name}"] for name in Function.__dataclass_fields__})


@dataclass
class ReapReport:
    """What one reaper pass did; the caller re-dispatches `redispatch`."""

    redispatch: list[int] = field(default_factory=list)
    lease_lapsed: int = 0
    expired: int = 0
    purged: int = 0


class Ledger(LedgerQueries):
    def __init__(self, engine: Engine, *, max_log_lines: int = 10_000) -> None:
        super().__init__(engine)
        self.max_log_lines = max_log_lines
        self._functions_seen: dict[str, float] = {}
        self._statements = StatementConnection(engine)  # the one-statement paths: claim, success, a submission

    def close(self) -> None:
        """Give back the connection the one-statement paths keep checked out (before the engine is disposed)."""
        self._statements.close()

    # --- functions ------------------------------------------------------------------------------------------------
    def put_function(self, name: str, config: FunctionConfig) -> tuple[Function, bool]:
        """Create or replace a function; returns it and whether it was created."""
        now = utcnow()
        values = config.model_dump()
        with self.engine.begin() as conn:
            updated = conn.execute(update(FUNCTIONS).where(FUNCTIONS.c.name == name)
                                   .values(**values, updated_at=now)).rowcount
            if not updated:
                conn.execute(insert(FUNCTIONS).values(name=name, **values, created_at=now, updated_at=now))
            row = conn.execute(select(FUNCTIONS).where(FUNCTIONS.c.name == name)).one()
        return Function.from_row(row), not updated

    def delete_function(self, name: str) -> None:
        self._functions_seen.pop(name, None)
        with self.engine.begin() as conn:
            if not conn.execute(delete(FUNCTIONS).where(FUNCTIONS.c.name == name)).rowcount:
                raise FunctionNotFound(f"function {name!r} does not exist")

    # --- submission -----------------------------------------------------------------------------------------------
    def create_invocation(self, function: str, invocation_id: str, request_id: str, payload: str, *,
                          replay_of: str | None = None, parent_pk: int | None = None,
                          queue: str | None = None, not_before: datetime | None = None,
                          also: Callable[[Connection, int], None] | None = None) -> Invocation:
        """Insert a new Enqueued invocation; the unique (function, invocation_id) index decides duplicates.
        `replay_of` is the request id of the failure this invocation replays, if it is one; `parent_pk` the
        invocation that fanned it out; `queue` the broker queue its doorbells go to; `not_before` the earliest
        start of a delayed invocation (its claim waits until then). `also(conn, pk)` writes rows that must commit
        with the invocation or not at all (a queue trigger's message ids)."""
        # One statement needs no transaction around it (Postgres: two round trips fewer); `also` rows do.
        alone = also is None and self.engine.dialect.name == "postgresql"
        try:
            with self._statements.connect() if alone else self.engine.begin() as conn:
                invocation = self.insert_invocation(conn, function, invocation_id, request_id, payload,
                                                    replay_of=replay_of, parent_pk=parent_pk, queue=queue,
                                                    not_before=not_before)
                if also is not None:
                    also(conn, invocation.pk)
        except IntegrityError:
            existing = self.find_invocation(function, invocation_id)
            if existing is None:  # the unique index fired on something else: not a duplicate, re-raise
                raise
            raise DuplicateInvocation(
                f"invocation {invocation_id!r} of function {function!r} already exists ({existing.status.value})",
                existing={"pk": existing.pk}) from None
        return invocation

    def insert_invocation(self, conn: Connection, function: str, invocation_id: str, request_id: str, payload: str,
                          *, replay_of: str | None = None, parent_pk: int | None = None, queue: str | None = None,
                          not_before: datetime | None = None, execution_pk: int | None = None) -> Invocation:
        """The insert itself, in the caller's transaction: the flow engine writes a step's invocation together
        with the step's new state, so neither exists without the other. FunctionNotFound for an unknown
        function; the unique index raises IntegrityError for a taken id."""
        now = utcnow()
        self._require_function(conn, function)
        pk = insert_one(conn, function=function, invocation_id=invocation_id, request_id=request_id, payload=payload,
                        now=now, replay_of=replay_of, parent_pk=parent_pk, queue=queue, not_before=not_before,
                        execution_pk=execution_pk)
        return Invocation(pk=pk, function=function, invocation_id=invocation_id, request_id=request_id,
                          status=Status.ENQUEUED, payload=payload, result=None, error=None, error_type=None,
                          condition=None, attempts=0, created_at=now, started_at=None, finished_at=None,
                          not_before=not_before, lease_expires_at=None, heartbeat_at=None, worker=None,
                          progress_percent=None, progress_message=None, log_lines=0, replay_of=replay_of,
                          parent_pk=parent_pk, execution_pk=execution_pk)

    def create_invocations(self, function: str, items: Sequence[NewInvocation], *, queue: str | None = None
                           ) -> list[tuple[Invocation | None, bool]]:
        """Insert a batch of new Enqueued invocations in one transaction (ids distinct within the batch); an id the
        ledger already holds is skipped, not an error. Per item: (invocation, created) — see ledger/bulk.py."""
        if not items:
            return []
        with self.engine.begin() as conn:
            self._require_function(conn, function)
            return insert_invocations(conn, function, items, queue=queue, now=utcnow())

    def _require_function(self, conn: Connection, function: str) -> None:
        """404 for an unknown function. A function seen in the last few seconds is not looked up again: a
        submission racing a delete is caught at claim time, where the invocation ends Invalid."""
        if self._functions_seen.get(function, 0.0) > time.monotonic():
            return
        if conn.execute(select(FUNCTIONS.c.name).where(FUNCTIONS.c.name == function)).first() is None:
            self._functions_seen.pop(function, None)
            raise FunctionNotFound(f"function {function!r} does not exist")
        self._functions_seen[function] = time.monotonic() + FUNCTION_CACHE_S

    def mark_undispatched(self, pks: Sequence[int]) -> None:
        """Flag invocations whose doorbell could not be published, so the reaper rings it as soon as it can."""
        if pks:
            with self.engine.begin() as conn:
                conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id.in_(pks), INVOCATIONS.c.status.in_(WAITING))
                             .values(dispatched_at=None))

    # --- the one status writer ------------------------------------------------------------------------------------
    def _move(self, conn: Connection, pk: int, target: Status, *, reason: str, expect: Iterable[Status] | None = None,
              attempt: int | None = None, known: tuple[Status, int] | None = None, **values: Any
              ) -> Invocation | None:
        """Move one invocation to `target` if the state machine allows it; None when it is not in an expected state.

        `attempt`, when given, must equal the row's attempt count: a worker whose lease was taken over cannot write
        the outcome of an attempt that is no longer current. `known` = (status, attempts) the caller already read
        or owns saves a round trip; the conditional UPDATE still refuses if the row has moved since.
        """
        if known is None:
            current = conn.execute(select(INVOCATIONS.c.status, INVOCATIONS.c.attempts)
                                   .where(INVOCATIONS.c.id == pk)).first()
            if current is None:
                return None
            known = (Status(current.status), current.attempts)
        status, attempts = known
        if (expect is not None and status not in set(expect)) or (attempt is not None and attempts != attempt):
            return None
        check_transition(status, target)
        now = utcnow()
        values.setdefault("updated_at", now)
        if target in TERMINAL:
            values.setdefault("finished_at", now)
            values.setdefault("lease_expires_at", None)
        row = move_row(conn, pk, (status, attempts), target, reason=reason[:1024], at=now, values=values)
        if row is None:  # somebody else moved it between our read and our write
            return None
        if target in TERMINAL:
            record_outcome(conn, row)  # outbox and dead letter commit with the transition, or not at all
        return Invocation.from_row(row)

    # --- worker side ----------------------------------------------------------------------------------------------
    def claim(self, pk: int, worker: str, lease_s: float) -> Claim | Invocation | None:
        """Start a new attempt. Returns a Claim to the one winner; an Invocation when it ended instead (expired,
        invalid) or must wait (not_before, concurrency); None when there is nothing to do (duplicate delivery)."""
        now = utcnow()
        if self.engine.dialect.name == "postgresql":
            with self._statements.connect() as conn:
                row = claimed_row(conn, pk, worker=worker, now=now, lease_expires_at=now + timedelta(seconds=lease_s))
            if row is not None:
                return Claim(invocation=Invocation.from_row(row), function=_function_of(row))
        with self.engine.begin() as conn:
            row = conn.execute(select(INVOCATIONS, *_FUNCTION_COLUMNS)
                               .outerjoin(FUNCTIONS, FUNCTIONS.c.name == INVOCATIONS.c.function)
                               .where(INVOCATIONS.c.id == pk)).first()
            if row is None or Status(row.status) not in WAITING:
                return None
            known = (Status(row.status), row.attempts)
            if row.fn_name is None:
                return self._move(conn, pk, Status.INVALID, reason="function deleted", condition=Condition.INVALID,
                                  known=known, error_type="FunctionNotFound",
                                  error=f"function {row.function!r} no longer exists")
            fn = _function_of(row)
            if now - (row.resubmitted_at or row.created_at) > timedelta(seconds=fn.max_event_age_s):
                return self._move(conn, pk, Status.EXPIRED, reason="max event age exceeded before start",
                                  known=known, condition=Condition.EVENT_AGE_EXCEEDED, error_type="EventAgeExceeded",
                                  error=f"waited longer than max_event_age_s={fn.max_event_age_s}")
            if row.not_before is not None and row.not_before > now:
                return Invocation.from_row(row)
            if fn.concurrency is not None:
                # Serialise the claims of a limited function on its row, so two workers cannot both see room.
                conn.execute(select(FUNCTIONS.c.name).where(FUNCTIONS.c.name == fn.name).with_for_update())
                if self._running_count(conn, fn.name) >= fn.concurrency:
                    return Invocation.from_row(row)
            moved = self._move(conn, pk, Status.RUNNING, reason=f"claimed by {worker}", known=known,
                               attempts=INCREMENT, worker=worker, started_at=now, heartbeat_at=now,
                               lease_expires_at=now + timedelta(seconds=lease_s), not_before=None,
                               progress_percent=None, progress_message=None)
            return None if moved is None else Claim(invocation=moved, function=fn)

    @staticmethod
    def _running_count(conn: Connection, function: str) -> int:
        running = select(func.count()).select_from(INVOCATIONS).where(
            INVOCATIONS.c.function == function, INVOCATIONS.c.status.in_([Status.RUNNING, Status.STOPPING]))
        return int(conn.execute(running).scalar_one())

    def heartbeat(self, pk: int, attempt: int, lease_s: float, *, progress: tuple[float, str] | None = None
                  ) -> Status | None:
        """Extend the lease of the current attempt; returns the status now in the ledger (None: attempt lost)."""
        now = utcnow()
        values: dict[str, Any] = {"heartbeat_at": now, "lease_expires_at": now + timedelta(seconds=lease_s)}
        if progress is not None:
            values["progress_percent"], values["progress_message"] = progress[0], progress[1][:1024]
        with self.engine.begin() as conn:
            row = conn.execute(update(INVOCATIONS).where(
                INVOCATIONS.c.id == pk, INVOCATIONS.c.attempts == attempt,
                INVOCATIONS.c.status.in_([Status.RUNNING, Status.STOPPING])).values(**values)
                .returning(INVOCATIONS.c.status)).first()
        return None if row is None else Status(row.status)

    def append_logs(self, pk: int, attempt: int, lines: Sequence[tuple[datetime, str, str]]) -> None:
        """Store log lines, keeping at most max_log_lines per invocation and saying so once when cut. Only while
        `attempt` is the invocation's current one: a worker that comes back after its lease was taken writes nothing."""
        if not lines:
            return
        with self.engine.begin() as conn:
            count = conn.execute(select(INVOCATIONS.c.log_lines).where(
                INVOCATIONS.c.id == pk, INVOCATIONS.c.attempts == attempt,
                INVOCATIONS.c.status.in_([Status.RUNNING, Status.STOPPING]))).scalar_one_or_none()
            if count is None or count > self.max_log_lines:
                return
            room = self.max_log_lines - count
            rows = [{"invocation_pk": pk, "attempt": attempt, "at": at, "level": level, "message": message}
                    for at, level, message in lines[:room]]
            if len(lines) > room:
                rows.append({"invocation_pk": pk, "attempt": attempt, "at": utcnow(), "level": "WARNING",
                             "message": f"[taskservice] log truncated: only the first {self.max_log_lines} lines "
                                        "of this invocation are kept"})
            if rows:
                conn.execute(insert(LOGS), rows)
                conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == pk)
                             .values(log_lines=INVOCATIONS.c.log_lines + len(rows)))

    def succeed(self, pk: int, attempt: int, result: Any) -> bool:
        """Record attempt `attempt`'s success; False when that attempt is no longer the current one (its lease was
        taken over, or the invocation was stopped)."""
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        reason = "handler returned"
        if self.engine.dialect.name == "postgresql":
            with self._statements.connect() as conn:
                if record_success(conn, pk, attempt, result=text, reason=reason, now=utcnow()):
                    return True
        with self.engine.begin() as conn:
            return self._move(conn, pk, Status.SUCCEEDED, reason=reason, known=(Status.RUNNING, attempt),
                              result=text, error=None, error_type=None, condition=SUCCESS_CONDITION,
                              progress_percent=100.0) is not None

    def fail(self, pk: int, attempt: int, *, error_type: str, error: str, max_retries: int, retry_delay_s: float,
             retry_base: int = 0, reason: str = "handler failed") -> Invocation | None:
        """Record a failed attempt: Retrying with a not_before while retries remain, else Failed. Attempts before
        `retry_base` belong to earlier runs (before a manual retry) and do not use up this run's retries."""
        now = utcnow()
        with self.engine.begin() as conn:
            if attempt - retry_base <= max_retries:
                return self._move(conn, pk, Status.RETRYING, reason=f"{reason}: {error_type}",
                                  known=(Status.RUNNING, attempt), error_type=error_type, error=error,
                                  lease_expires_at=None, not_before=now + timedelta(seconds=retry_delay_s),
                                  dispatched_at=now)
            return self._move(conn, pk, Status.FAILED, reason=f"{reason}: {error_type}",
                              known=(Status.RUNNING, attempt), error_type=error_type, error=error,
                              condition=Condition.RETRIES_EXHAUSTED)

    def invalidate(self, pk: int, attempt: int, *, error_type: str, error: str) -> Invocation | None:
        with self.engine.begin() as conn:
            return self._move(conn, pk, Status.INVALID, reason=f"cannot run: {error_type}",
                              known=(Status.RUNNING, attempt), error_type=error_type, error=error,
                              condition=Condition.INVALID)

    def request_stop(self, pk: int) -> Invocation:
        """Durable stop: a waiting invocation ends Stopped at once (it never runs); a running one becomes Stopping and
        its worker's watchdog kills the handler. Works with no worker online. IllegalTransition when terminal."""
        with self.engine.begin() as conn:
            moved = self.stop_in(conn, pk)
        if moved is None:  # it moved under us (started or ended): look again
            return self.request_stop(pk)
        return moved

    def stop_in(self, conn: Connection, pk: int) -> Invocation | None:
        """request_stop inside the caller's transaction; None when the invocation moved between read and write."""
        current = conn.execute(select(INVOCATIONS.c.status).where(INVOCATIONS.c.id == pk)).scalar_one()
        status = Status(current)
        if status in WAITING:
            return self._move(conn, pk, Status.STOPPED, reason="stopped before it started", expect=WAITING,
                              condition=Condition.STOPPED, error_type="Stopped", error="stopped on request")
        check_transition(status, Status.STOPPING)
        return self._move(conn, pk, Status.STOPPING, reason="stop requested", expect={Status.RUNNING})

    def hand_back(self, pk: int, attempt: int, *, reason: str) -> Invocation | None:
        """A draining worker killed this attempt before it could finish: the invocation waits again at once, and the
        attempt is refunded (retry_base + 1) because the handler did not fail. A Stopping attempt ends Stopped."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(INVOCATIONS.c.status, INVOCATIONS.c.attempts)
                               .where(INVOCATIONS.c.id == pk)).first()
            if row is None or row.attempts != attempt:
                return None
            if Status(row.status) is Status.STOPPING:
                return self._move(conn, pk, Status.STOPPED, reason=f"{reason}; stop requested",
                                  known=(Status.STOPPING, attempt), condition=Condition.STOPPED,
                                  error_type="Stopped", error="stopped on request")
            return self._move(conn, pk, Status.RETRYING, reason=f"{reason}: handed back", expect={Status.RUNNING},
                              known=(Status(row.status), attempt), retry_base=INCREMENT,
                              lease_expires_at=None, not_before=now, dispatched_at=now, worker=None,
                              error_type="WorkerDraining", error="the worker shut down before this attempt ended")

    def stopped(self, pk: int, attempt: int) -> Invocation | None:
        """The worker killed a Stopping attempt: it ends Stopped."""
        with self.engine.begin() as conn:
            return self._move(conn, pk, Status.STOPPED, reason="handler killed on stop request",
                              expect={Status.STOPPING}, attempt=attempt, condition=Condition.STOPPED,
                              error_type="Stopped", error="stopped on request")

    def retry(self, pk: int, *, include_succeeded: bool = False) -> Invocation:
        """Re-run an ended invocation under the same id as a new run: a fresh retry budget and event age, the
        result and error of the last run cleared (transitions and per-attempt logs keep them). The caller rings the
        doorbell. Conflict unless it has ended (and, for Succeeded, unless asked explicitly)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(INVOCATIONS.c.status, INVOCATIONS.c.attempts)
                               .where(INVOCATIONS.c.id == pk)).first()
            if row is None:
                raise InvocationNotFound(f"invocation {pk} no longer exists")
            status = Status(row.status)
            if status not in TERMINAL:
                raise NotRetryable(f"only an ended invocation can be retried; this one is {status.value}")
            if status is Status.SUCCEEDED and not include_succeeded:
                raise NotRetryable("this invocation Succeeded; retry it explicitly (succeeded=true / "
                                   "--include-succeeded) to run it again")
            moved = self._move(conn, pk, Status.ENQUEUED, reason=f"retried after {status.value}",
                               known=(status, row.attempts), retry_base=row.attempts, resubmitted_at=now,
                               dispatched_at=now, not_before=None, finished_at=None, lease_expires_at=None,
                               result=None, error=None, error_type=None, condition=None, worker=None,
                               progress_percent=None, progress_message=None)
        if moved is None:  # another retry won the race
            raise NotRetryable("this invocation was retried by someone else at the same moment")
        return moved

    def defer(self, pk: int, delay_s: float) -> None:
        """Push a waiting invocation's earliest start back without a status change (concurrency limit)."""
        with self.engine.begin() as conn:
            conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == pk, INVOCATIONS.c.status.in_(WAITING))
                         .values(not_before=utcnow() + timedelta(seconds=delay_s), dispatched_at=utcnow()))

    # --- reaper ---------------------------------------------------------------------------------------------------
    def reap(self, *, retention_s: float, batch: int = 500) -> ReapReport:
        """Hand lapsed leases to a new attempt, expire over-age waiting invocations, collect doorbells that never
        reached the broker and drop rows past retention. Safe to run in several processes at once: every move is
        conditional."""
        report = ReapReport()
        now = utcnow()
        with self.engine.begin() as conn:
            lapsed = conn.execute(select(INVOCATIONS.c.id, INVOCATIONS.c.attempts, INVOCATIONS.c.status,
                                         INVOCATIONS.c.retry_base, INVOCATIONS.c.execution_pk,
                                         FUNCTIONS.c.max_retries)
                                  .outerjoin(FUNCTIONS, FUNCTIONS.c.name == INVOCATIONS.c.function)
                                  .where(INVOCATIONS.c.status.in_([Status.RUNNING, Status.STOPPING]),
                                         INVOCATIONS.c.lease_expires_at < now).limit(batch)).all()
            for row in lapsed:
                error = "the worker running this attempt stopped heartbeating (killed or lost)"
                if Status(row.status) is Status.STOPPING:
                    moved = self._move(conn, row.id, Status.STOPPED, reason="lease lapsed while stopping",
                                       expect={Status.STOPPING}, attempt=row.attempts, condition=Condition.STOPPED)
                elif row.max_retries is not None and \
                        row.attempts - row.retry_base <= retries_allowed(row.max_retries, row.execution_pk):
                    moved = self._move(conn, row.id, Status.RETRYING, reason="lease lapsed", expect={Status.RUNNING},
                                       attempt=row.attempts, error_type="WorkerLost", error=error,
                                       lease_expires_at=None, not_before=now, dispatched_at=now)
                    if moved is not None:
                        report.redispatch.append(row.id)
                else:
                    moved = self._move(conn, row.id, Status.FAILED, reason="lease lapsed, no retries left",
                                       expect={Status.RUNNING}, attempt=row.attempts, error_type="WorkerLost",
                                       error=error, condition=Condition.RETRIES_EXHAUSTED)
                report.lease_lapsed += moved is not None
        with self.engine.begin() as conn:
            # The oldest waiting invocations are the ones that may have outlived their max event age unclaimed (no
            # worker, or a queue nobody consumes); the claim catches the rest.
            oldest = conn.execute(select(INVOCATIONS.c.id, INVOCATIONS.c.created_at, INVOCATIONS.c.resubmitted_at,
                                         FUNCTIONS.c.max_event_age_s)
                                  .join(FUNCTIONS, FUNCTIONS.c.name == INVOCATIONS.c.function)
                                  .where(INVOCATIONS.c.status.in_(WAITING))
                                  .order_by(INVOCATIONS.c.id).limit(batch)).all()
            for row in oldest:
                if now - (row.resubmitted_at or row.created_at) > timedelta(seconds=row.max_event_age_s):
                    report.expired += self._expire(conn, row.id, row.max_event_age_s)
            # A doorbell that never left (the publish failed: dispatched_at NULL) is rung as soon as the broker
            # takes it; the claim makes an extra message harmless.
            unsent_due = (INVOCATIONS.c.status.in_(WAITING), INVOCATIONS.c.dispatched_at.is_(None),
                          or_(INVOCATIONS.c.not_before.is_(None), INVOCATIONS.c.not_before <= now))
            unsent = [r.id for r in conn.execute(select(INVOCATIONS.c.id).where(*unsent_due)
                                                 .order_by(INVOCATIONS.c.id).limit(batch))]
            if unsent:
                conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id.in_(unsent), *unsent_due)
                             .values(dispatched_at=now))
            report.redispatch.extend(unsent)
        with self.engine.begin() as conn:
            old = select(INVOCATIONS.c.id).where(INVOCATIONS.c.status.in_(TERMINAL),
                                                 INVOCATIONS.c.finished_at < now - timedelta(seconds=retention_s))
            old_ids = [r.id for r in conn.execute(old.order_by(INVOCATIONS.c.id).limit(batch))]
            if old_ids:
                for table in (TRANSITIONS, LOGS):
                    conn.execute(delete(table).where(table.c.invocation_pk.in_(old_ids)))
                # Records still waiting for delivery outlive their invocation; delivered ones and dead letters go.
                conn.execute(delete(DELIVERIES).where(DELIVERIES.c.invocation_pk.in_(old_ids),
                                                      DELIVERIES.c.status != "pending"))
                conn.execute(delete(DEAD_LETTERS).where(DEAD_LETTERS.c.invocation_pk.in_(old_ids)))
                report.purged = conn.execute(delete(INVOCATIONS).where(INVOCATIONS.c.id.in_(old_ids))).rowcount
            report.purged += purge_executions(conn, now - timedelta(seconds=retention_s), batch=batch)
        return report

    def _expire(self, conn: Connection, pk: int, max_event_age_s: int) -> bool:
        return self._move(conn, pk, Status.EXPIRED, reason="max event age exceeded while waiting", expect=WAITING,
                          condition=Condition.EVENT_AGE_EXCEEDED, error_type="EventAgeExceeded",
                          error=f"waited longer than max_event_age_s={max_event_age_s}") is not None

    def silent_doorbells(self, queue: str, queued: int, *, rung_before: datetime, grace_s: float, batch: int = 500
                         ) -> list[tuple[int, datetime]]:
        """Waiting, due invocations of `queue` whose doorbell is not among the `queued` messages it holds ready.

        The queue is FIFO, so the messages still in it are the `queued` most recently rung ones. Of the N waiting
        invocations rung more than `grace_s` before `rung_before` (when `queued` was read), the oldest N - queued
        therefore have no doorbell in the queue: it was lost (a worker killed between ack and claim, a claim that
        failed, a lost delayed message) or a busy worker holds it. Doorbells rung within the grace are left out of N
        (one may still be on its way to the broker) but may be among `queued`, so the estimate errs towards ringing
        too few, never too many; what it misses now it finds once the queue is quiet. A backlog of any size
        legitimately queued gives N <= queued and costs one index-only count. Returns (pk, dispatched_at) pairs; the
        reaper re-rings those it saw twice."""
        settled = rung_before - timedelta(seconds=grace_s)
        waiting_rung = (or_(INVOCATIONS.c.queue == queue, INVOCATIONS.c.queue.is_(None)),
                        INVOCATIONS.c.status.in_(WAITING), INVOCATIONS.c.dispatched_at.is_not(None),
                        INVOCATIONS.c.dispatched_at < settled)
        with self.engine.connect() as conn:
            if queued > 0:
                count = select(func.count()).select_from(INVOCATIONS).where(*waiting_rung)
                rung = int(conn.execute(count).scalar_one())
                silent = rung - queued
                if silent <= 0:
                    return []
            else:
                silent = batch
            rows = conn.execute(select(INVOCATIONS.c.id, INVOCATIONS.c.dispatched_at, INVOCATIONS.c.not_before)
                                .where(*waiting_rung)
                                .order_by(INVOCATIONS.c.dispatched_at, INVOCATIONS.c.id)
                                .limit(min(silent, batch))).all()
        return [(r.id, r.dispatched_at) for r in rows if r.not_before is None or r.not_before < settled]

    def take_for_reringing(self, silent: Sequence[tuple[int, datetime]]) -> list[int]:
        """Mark silent doorbells as rung now, each only if nobody rang it since (several reapers, a claim racing
        us); returns the pks this caller should ring."""
        now = utcnow()
        taken = []
        with self.engine.begin() as conn:
            for pk, dispatched_at in silent:
                if conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == pk, INVOCATIONS.c.status.in_(WAITING),
                                                          INVOCATIONS.c.dispatched_at == dispatched_at)
                                .values(dispatched_at=now)).rowcount:
                    taken.append(pk)
        return taken
