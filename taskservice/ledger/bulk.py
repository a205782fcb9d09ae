"""New invocations in as few round trips as the database allows: one with its history row in one Postgres statement
(`insert_one`, every single submission), and many in one transaction (the ledger side of `Submitter.submit_many`).

One multi-row `INSERT … ON CONFLICT (function, invocation_id) DO NOTHING RETURNING` decides every item's fate at
once: the same unique index as a single submission, so a taken id (by an earlier call, or by a concurrent one that
commits first) is skipped rather than aborting the batch, and the items that were inserted come back with their
keys. Their history rows follow in one more statement. Both backends speak this dialect of INSERT (SQLite ≥ 3.35).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, TextClause, bindparam, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from taskservice.ledger.models import INVOCATIONS, TRANSITIONS, UTCDateTime
from taskservice.ledger.records import Invocation
from taskservice.ledger.states import Status

#: Rows per INSERT statement: 1,000 rows x 16 columns stays under SQLite's 32,766 bound parameters.
CHUNK = 1000
_STATEMENTS: dict[str, Insert] = {}
# Postgres: the whole batch as three array parameters, inserted with its history rows in one statement. A multi-row
# VALUES list of 16,000 parameters costs psycopg more client CPU to prepare than the server needs to run it.
_INSERT_UNNESTED: TextClause = text("""
WITH created AS (
  INSERT INTO invocations (function, invocation_id, request_id, status, payload, attempts, log_lines, created_at,
                           updated_at, dispatched_at, retry_base, queue)
  SELECT :function, t.invocation_id, t.request_id, 'Enqueued', t.payload, 0, 0, :now, :now, :now, 0, :queue
  FROM unnest(CAST(:ids AS text[]), CAST(:request_ids AS text[]), CAST(:payloads AS text[]))
       AS t(invocation_id, request_id, payload)
  ON CONFLICT (function, invocation_id) DO NOTHING
  RETURNING id, invocation_id),
logged AS (
  INSERT INTO invocation_transitions (invocation_pk, from_status, to_status, attempt, reason, at)
  SELECT id, NULL, 'Enqueued', 0, 'submitted', :now FROM created)
SELECT id, invocation_id FROM created""")


_INSERT_ONE: TextClause = text("""
WITH created AS (
  INSERT INTO invocations (function, invocation_id, request_id, status, payload, attempts, log_lines, created_at,
                           updated_at, dispatched_at, replay_of, parent_pk, retry_base, queue, not_before,
                           execution_pk)
  VALUES (:function, :invocation_id, :request_id, 'Enqueued', :payload, 0, 0, :now, :now, :now, :replay_of,
          :parent_pk, 0, :queue, :not_before, :execution_pk)
  RETURNING id),
logged AS (
  INSERT INTO invocation_transitions (invocation_pk, from_status, to_status, attempt, reason, at)
  SELECT id, NULL, 'Enqueued', 0, 'submitted', :now FROM created)
SELECT id FROM created""").bindparams(bindparam("now", type_=UTCDateTime()),
                                     bindparam("not_before", type_=UTCDateTime()))
_INSERT_INVOCATION = insert(INVOCATIONS).returning(INVOCATIONS.c.id)
_INSERT_TRANSITION = insert(TRANSITIONS)


def insert_one(conn: Connection, *, function: str, invocation_id: str, request_id: str, payload: str,
               now: datetime, replay_of: str | None, parent_pk: int | None, queue: str | None,
               not_before: datetime | None, execution_pk: int | None) -> int:
    """Insert one Enqueued invocation and its history row (one statement on Postgres, two elsewhere); its key. A
    taken (function, invocation_id) raises IntegrityError."""
    values = {"function": function, "invocation_id": invocation_id, "request_id": request_id, "payload": payload,
              "now": now, "replay_of": replay_of, "parent_pk": parent_pk, "queue": queue, "not_before": not_before,
              "execution_pk": execution_pk}
    if conn.dialect.name == "postgresql":
        return int(conn.execute(_INSERT_ONE, values).scalar_one())
    pk = int(conn.execute(_INSERT_INVOCATION, {
        "function": function, "invocation_id": invocation_id, "request_id": request_id, "status": Status.ENQUEUED,
        "payload": payload, "attempts": 0, "log_lines": 0, "created_at": now, "updated_at": now,
        "dispatched_at": now, "replay_of": replay_of, "parent_pk": parent_pk, "retry_base": 0, "queue": queue,
        "not_before": not_before, "execution_pk": execution_pk}).scalar_one())
    conn.execute(_INSERT_TRANSITION, {"invocation_pk": pk, "from_status": None, "to_status": Status.ENQUEUED,
                                      "attempt": 0, "reason": "submitted", "at": now})
    return pk


@dataclass(frozen=True)
class NewInvocation:
    """One item of a batch, already validated and encoded by the submitter."""

    invocation_id: str
    request_id: str
    payload: str


def _insert_skipping_taken(dialect: str) -> Insert:
    """Built once per dialect: the hot path binds parameters instead of compiling a statement per call."""
    statement = _STATEMENTS.get(dialect)
    if statement is None:
        make = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (make(INVOCATIONS)
                     .on_conflict_do_nothing(index_elements=[INVOCATIONS.c.function, INVOCATIONS.c.invocation_id])
                     .returning(INVOCATIONS.c.id, INVOCATIONS.c.invocation_id))
        _STATEMENTS[dialect] = statement
    return statement


def insert_invocations(conn: Connection, function: str, items: Sequence[NewInvocation], *, queue: str | None,
                       now: datetime) -> list[tuple[Invocation | None, bool]]:
    """Insert `items` (ids distinct within the batch) as Enqueued invocations of `function`, inside the caller's
    transaction. Returns, per item in order, (the new invocation, True) or (the invocation already holding the id,
    False); (None, False) in the rare case the holder was purged between the insert and the read."""
    if conn.dialect.name == "postgresql":
        created = _insert_postgres(conn, function, items, queue=queue, now=now)
    else:
        created = _insert_generic(conn, function, items, queue=queue, now=now)
    return _results(conn, function, items, created, now)


def _insert_postgres(conn: Connection, function: str, items: Sequence[NewInvocation], *, queue: str | None,
                     now: datetime) -> dict[str, int]:
    created: dict[str, int] = {}
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        rows = conn.execute(_INSERT_UNNESTED, {
            "function": function, "now": now, "queue": queue, "ids": [i.invocation_id for i in chunk],
            "request_ids": [i.request_id for i in chunk], "payloads": [i.payload for i in chunk]})
        created.update((r.invocation_id, r.id) for r in rows)
    return created


def _insert_generic(conn: Connection, function: str, items: Sequence[NewInvocation], *, queue: str | None,
                    now: datetime) -> dict[str, int]:
    rows: list[dict[str, Any]] = [
        {"function": function, "invocation_id": item.invocation_id, "request_id": item.request_id,
         "status": Status.ENQUEUED, "payload": item.payload, "attempts": 0, "log_lines": 0, "created_at": now,
         "updated_at": now, "dispatched_at": now, "replay_of": None, "parent_pk": None, "retry_base": 0,
         "queue": queue, "not_before": None} for item in items]
    statement = _insert_skipping_taken(conn.dialect.name)
    created: dict[str, int] = {}
    for start in range(0, len(rows), CHUNK):  # executemany: SQLAlchemy sends each chunk as one multi-row INSERT
        chunk = rows[start:start + CHUNK]
        created.update((r.invocation_id, r.id) for r in conn.execute(statement, chunk))
    if created:
        conn.execute(insert(TRANSITIONS), [
            {"invocation_pk": pk, "from_status": None, "to_status": Status.ENQUEUED, "attempt": 0,
             "reason": "submitted", "at": now} for pk in created.values()])
    return created


def _results(conn: Connection, function: str, items: Sequence[NewInvocation], created: dict[str, int],
             now: datetime) -> list[tuple[Invocation | None, bool]]:
    taken = [item.invocation_id for item in items if item.invocation_id not in created]
    holders: dict[str, Invocation] = {}
    for start in range(0, len(taken), CHUNK):
        found = conn.execute(select(INVOCATIONS).where(INVOCATIONS.c.function == function,
                                                       INVOCATIONS.c.invocation_id.in_(taken[start:start + CHUNK])))
        holders.update((r.invocation_id, Invocation.from_row(r)) for r in found)
    results: list[tuple[Invocation | None, bool]] = []
    for item in items:
        pk = created.get(item.invocation_id)
        if pk is None:
            results.append((holders.get(item.invocation_id), False))
            continue
        results.append((Invocation(
            pk=pk, function=function, invocation_id=item.invocation_id, request_id=item.request_id,
            status=Status.ENQUEUED, payload=item.payload, result=None, error=None, error_type=None, condition=None,
            attempts=0, created_at=now, started_at=None, finished_at=None, not_before=None, lease_expires_at=None,
            heartbeat_at=None, worker=None, progress_percent=None, progress_message=None, log_lines=0), True))
    return results
