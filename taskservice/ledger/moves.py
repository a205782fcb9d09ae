"""The statement of a status change, built once per shape and then only bound: building a conditional UPDATE with
its history row as a SQLAlchemy expression cost ~2.3 ms of CPU per call (column proxies of the CTE, the cache key),
several times the database's own work, on the path every attempt takes twice (claim and outcome).

A shape is the set of columns a change sets. Values are bound parameters; a column to count up by one (attempts on
a claim, retry_base when a draining worker hands an attempt back) is given as `INCREMENT`. On Postgres the UPDATE
and its transition row are one statement (a data-modifying CTE, one round trip); elsewhere they are two, in the
caller's transaction.

The claim of the common case — a waiting invocation of a function without a concurrency limit, due and young enough
— is one Postgres statement of its own (`claimed_row`), run outside a transaction: the row lock, the checks, the
update, the history row and the function's settings in a single round trip instead of five. So is the success of
an attempt whose function has no on_success destination (`record_success`): the outcome, its history row and, for a
flow step, the engine's wake-up — all that `record_outcome` would write for it.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Executable,
    Row,
    TextClause,
    TextualSelect,
    Update,
    bindparam,
    column,
    insert,
    select,
    text,
    update,
)

from taskservice.ledger.models import FUNCTIONS, INVOCATIONS, TRANSITIONS, UTCDateTime
from taskservice.ledger.states import Status
from taskservice.statuses import SUCCESS_CONDITION


class _Increment:
    def __repr__(self) -> str:
        return "INCREMENT"


#: A value for a counter column: the column's current value + 1.
INCREMENT: Final = _Increment()

_UPDATES: dict[tuple[str, ...], Update] = {}
_LOGGED: dict[tuple[str, ...], Executable] = {}
_INSERT_TRANSITION = insert(TRANSITIONS)


def _shape(values: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(f"{key}+" if value is INCREMENT else key for key, value in values.items()))


def _update(shape: tuple[str, ...]) -> Update:
    """UPDATE invocations SET status = :to_status, <shape> WHERE id = :pk AND status = :from_status AND attempts =
    :known_attempts RETURNING *: refused (no row) when another writer moved the row first."""
    statement = _UPDATES.get(shape)
    if statement is None:
        sets: dict[str, Any] = {"status": bindparam("to_status", type_=INVOCATIONS.c.status.type)}
        for key in shape:
            if key.endswith("+"):
                sets[key[:-1]] = INVOCATIONS.c[key[:-1]] + 1
            else:
                sets[key] = bindparam(f"set_{key}", type_=INVOCATIONS.c[key].type)
        statement = (update(INVOCATIONS)
                     .where(INVOCATIONS.c.id == bindparam("pk"),
                            INVOCATIONS.c.status == bindparam("from_status", type_=INVOCATIONS.c.status.type),
                            INVOCATIONS.c.attempts == bindparam("known_attempts"))
                     .values(sets).returning(*INVOCATIONS.c))
        _UPDATES[shape] = statement
    return statement


def _logged(shape: tuple[str, ...]) -> Executable:
    """Postgres: WITH moved AS (the UPDATE), logged AS (INSERT INTO transitions SELECT … FROM moved) SELECT * FROM
    moved. When the UPDATE matches nothing, nothing is logged and no row comes back."""
    statement = _LOGGED.get(shape)
    if statement is None:
        changed = _update(shape).cte("moved")
        logged = insert(TRANSITIONS).from_select(
            ["invocation_pk", "from_status", "to_status", "attempt", "reason", "at"],
            select(changed.c.id, bindparam("from_status", type_=TRANSITIONS.c.from_status.type),
                   bindparam("to_status", type_=TRANSITIONS.c.to_status.type), changed.c.attempts,
                   bindparam("reason", type_=TRANSITIONS.c.reason.type),
                   bindparam("at", type_=TRANSITIONS.c.at.type))).cte("logged")
        statement = select(changed).add_cte(logged)
        _LOGGED[shape] = statement
    return statement


def move_row(conn: Connection, pk: int, known: tuple[Status, int], target: Status, *, reason: str, at: datetime,
             values: Mapping[str, Any]) -> Row[Any] | None:
    """Move the invocation from `known` (status, attempts) to `target`, setting `values`, and log the transition;
    the new row, or None when the row is no longer in the `known` state. The caller checked the state machine."""
    shape = _shape(values)
    params: dict[str, Any] = {f"set_{key}": value for key, value in values.items() if value is not INCREMENT}
    params.update(pk=pk, from_status=known[0], known_attempts=known[1], to_status=target)
    if conn.dialect.name == "postgresql":
        return conn.execute(_logged(shape), {**params, "reason": reason, "at": at}).first()
    row = conn.execute(_update(shape), params).first()
    if row is not None:
        conn.execute(_INSERT_TRANSITION, {"invocation_pk": pk, "from_status": known[0], "to_status": target,
                                          "attempt": row.attempts, "reason": reason, "at": at})
    return row


# The claim answers with the invocation's row in model order, typed as the model types it.
_MOVED_COLUMNS = ", ".join(f"m.{c.name}" for c in INVOCATIONS.c)
_INVOCATION_RESULT = [column(c.name, c.type) for c in INVOCATIONS.c]

# FOR UPDATE OF i: a second claimer waits for the first, then finds the row no longer waiting and gets nothing.
# `claimable` reads the status it moves from, so the history row names it; the slow path (Ledger.claim) handles every
# case this refuses: an unknown function, a concurrency limit, not yet due, too old, or not waiting at all.
_CLAIM: TextualSelect = text(f"""
WITH claimable AS (
  SELECT i.id, i.status AS from_status FROM invocations i JOIN functions f ON f.name = i.function
  WHERE i.id = :pk AND i.status IN ('Enqueued', 'Retrying') AND f.concurrency IS NULL
    AND (i.not_before IS NULL OR i.not_before <= :now)
    AND COALESCE(i.resubmitted_at, i.created_at) >= :now - f.max_event_age_s * interval '1 second'
  FOR UPDATE OF i),
moved AS (
  UPDATE invocations u SET status = 'Running', attempts = u.attempts + 1, worker = :worker, started_at = :now,
    heartbeat_at = :now, lease_expires_at = :lease_expires_at, not_before = NULL, progress_percent = NULL,
    progress_message = NULL, updated_at = :now
  FROM claimable c WHERE u.id = c.id AND u.status = c.from_status
  RETURNING u.*, c.from_status AS claimed_from),
logged AS (
  INSERT INTO invocation_transitions (invocation_pk, from_status, to_status, attempt, reason, at)
  SELECT id, claimed_from, 'Running', attempts, :reason, :now FROM moved)
SELECT {_MOVED_COLUMNS}, {", ".join(f"f.{c.name} AS fn_{c.name}" for c in FUNCTIONS.c)}
FROM moved m JOIN functions f ON f.name = m.function
""").bindparams(bindparam("now", type_=UTCDateTime()), bindparam("lease_expires_at", type_=UTCDateTime())).columns(
    *_INVOCATION_RESULT, *(column(f"fn_{c.name}", c.type) for c in FUNCTIONS.c))


def claimed_row(conn: Connection, pk: int, *, worker: str, now: datetime, lease_expires_at: datetime
                ) -> Row[Any] | None:
    """Postgres, outside a transaction: claim a waiting invocation in one statement; the Running row with the
    function's columns (as fn_<name>), or None when anything needs the slow path's judgement."""
    return conn.execute(_CLAIM, {"pk": pk, "worker": worker, "now": now, "lease_expires_at": lease_expires_at,
                                 "reason": f"claimed by {worker}"[:1024]}).first()


# The guard on on_success keeps this exactly what _move + record_outcome would do: with a destination the record must
# go to the outbox in the same transaction, and the slow path (Ledger.succeed) writes it.
_SUCCEED: TextClause = text("""
WITH moved AS (
  UPDATE invocations u SET status = 'Succeeded', result = :result, error = NULL, error_type = NULL,
    condition = :condition, progress_percent = 100, updated_at = :now, finished_at = :now, lease_expires_at = NULL
  WHERE u.id = :pk AND u.status = 'Running' AND u.attempts = :attempt
    AND NOT EXISTS (SELECT 1 FROM functions f WHERE f.name = u.function AND f.on_success IS NOT NULL)
  RETURNING u.id, u.attempts, u.execution_pk),
logged AS (
  INSERT INTO invocation_transitions (invocation_pk, from_status, to_status, attempt, reason, at)
  SELECT id, 'Running', 'Succeeded', attempts, :reason, :now FROM moved),
woken AS (
  INSERT INTO flow_wakeups (execution_pk, due_at) SELECT execution_pk, :now FROM moved WHERE execution_pk IS NOT NULL)
SELECT id FROM moved
""").bindparams(bindparam("now", type_=UTCDateTime()))


def record_success(conn: Connection, pk: int, attempt: int, *, result: str, reason: str, now: datetime) -> bool:
    """Postgres, outside a transaction: record attempt `attempt`'s success in one statement; False when the function
    has a success destination or the attempt is no longer current (the slow path decides). Only the id comes back:
    nobody reads the row of a success, and describing ~30 result columns was a tenth of the statement's CPU."""
    return conn.execute(_SUCCEED, {"pk": pk, "attempt": attempt, "result": result, "condition": SUCCESS_CONDITION,
                                   "reason": reason, "now": now}).first() is not None
