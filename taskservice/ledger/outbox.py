"""The outbox and the dead-letter store: written in the terminal transition's transaction (`record_outcome`),
drained by the relay (`Outbox`), read by the API."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from taskservice.clock import utcnow
from taskservice.ledger.destination_record import build_record
from taskservice.ledger.models import DEAD_LETTERS, DELIVERIES, FUNCTIONS, WAKEUPS

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    id: int
    function: str
    invocation_id: str
    request_id: str
    destination: str
    condition: str
    record: dict[str, Any]
    attempts: int
    status: str
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        m = row._mapping
        return cls(id=m["id"], function=m["function"], invocation_id=m["invocation_id"], request_id=m["request_id"],
                   destination=m["destination"], condition=m["condition"], record=json.loads(m["record"]),
                   attempts=m["attempts"], status=m["status"], last_error=m["last_error"],
                   delivered_at=m["delivered_at"], created_at=m["created_at"])


def record_outcome(conn: Connection, invocation: Any) -> None:
    """Write what a terminal invocation leaves behind, inside the transition's own transaction: an outbox row when
    the function has a destination for this outcome, a dead letter for every failure, and a wake-up for the flow
    engine when the invocation is a flow step (so the engine advances an execution exactly when a step ends)."""
    if invocation.execution_pk is not None:
        conn.execute(insert(WAKEUPS).values(execution_pk=invocation.execution_pk, due_at=utcnow()))
    condition = invocation.condition or ""
    fn = conn.execute(select(FUNCTIONS.c.on_success, FUNCTIONS.c.on_failure)
                      .where(FUNCTIONS.c.name == invocation.function)).first()
    destination = None if fn is None else (fn.on_success if condition == "" else fn.on_failure)
    if condition == "" and destination is None:
        return
    common = _record_row(function=invocation.function, invocation_id=invocation.invocation_id,
                         request_id=invocation.request_id, condition=condition, attempts=invocation.attempts,
                         payload=invocation.payload, result=invocation.result, error_type=invocation.error_type,
                         error=invocation.error, finished_at=invocation.finished_at)
    common["invocation_pk"] = invocation.id
    if condition != "":
        conn.execute(insert(DEAD_LETTERS).values(**common, error_type=invocation.error_type))
    if destination is not None:
        _enqueue(conn, common, destination)


def record_execution_outcome(conn: Connection, *, flow: str, execution: str, request_id: str, condition: str,
                             payload: str, result: str | None, error_type: str | None, error: str | None,
                             destination: str | None) -> None:
    """The destination record of an ended flow execution, in Function Compute's format with the flow's name as
    the function and the execution name as the invocation id. No dead letter: a dead letter is replayed as an
    invocation of a function, and a flow is redriven instead."""
    if destination is not None:
        _enqueue(conn, _record_row(function=flow, invocation_id=execution, request_id=request_id,
                                   condition=condition, attempts=1, payload=payload, result=result,
                                   error_type=error_type, error=error, finished_at=None), destination)


def _record_row(*, function: str, invocation_id: str, request_id: str, condition: str, attempts: int, payload: str,
                result: str | None, error_type: str | None, error: str | None, finished_at: datetime | None
                ) -> dict[str, Any]:
    record = build_record(function=function, request_id=request_id, condition=condition, attempts=attempts,
                          payload=payload, result=result, error_type=error_type, error=error,
                          finished_at=finished_at or utcnow())
    return {"invocation_pk": None, "function": function, "invocation_id": invocation_id, "request_id": request_id,
            "condition": condition, "record": json.dumps(record, separators=(",", ":"), ensure_ascii=False),
            "created_at": utcnow()}


def _enqueue(conn: Connection, common: dict[str, Any], destination: str) -> None:
    conn.execute(insert(DELIVERIES).values(**common, destination=destination, status=PENDING, attempts=0,
                                           next_attempt_at=utcnow()))


class Outbox:
    """What the relay needs: claim due records, and say how each delivery went."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, relay_id: str, *, limit: int, lease_s: float) -> list[Delivery]:
        """Take up to `limit` due records for `lease_s` seconds. Several relays skip each other's rows (SKIP LOCKED
        on Postgres; SQLite serialises writers), and a claim whose relay died lapses and is taken again."""
        now = utcnow()
        with self.engine.begin() as conn:
            due = (select(DELIVERIES.c.id)
                   .where(DELIVERIES.c.status == PENDING, DELIVERIES.c.next_attempt_at <= now,
                          or_(DELIVERIES.c.claim_expires_at.is_(None), DELIVERIES.c.claim_expires_at < now))
                   .order_by(DELIVERIES.c.id).limit(limit).with_for_update(skip_locked=True))
            ids = [r.id for r in conn.execute(due)]
            if not ids:
                return []
            rows = conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(ids))
                                .values(claimed_by=relay_id, claim_expires_at=now + timedelta(seconds=lease_s))
                                .returning(*DELIVERIES.c)).all()
        return sorted((Delivery.from_row(r) for r in rows), key=lambda d: d.id)

    def delivered(self, relay_id: str, ids: list[int]) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(ids), DELIVERIES.c.status == PENDING)
                             .values(status=DELIVERED, delivered_at=utcnow(), attempts=DELIVERIES.c.attempts + 1,
                                     claimed_by=relay_id, claim_expires_at=None, last_error=None))

    def release(self, ids: list[int]) -> None:
        """Give claimed records back untouched (not attempted), for any relay to take at once."""
        if ids:
            with self.engine.begin() as conn:
                conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(ids), DELIVERIES.c.status == PENDING)
                             .values(claim_expires_at=None, claimed_by=None))

    def failed(self, delivery: Delivery, error: str, *, retry_in_s: float, give_up: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery.id, DELIVERIES.c.status == PENDING)
                         .values(status=FAILED if give_up else PENDING, attempts=DELIVERIES.c.attempts + 1,
                                 last_error=error[:1024], claim_expires_at=None,
                                 next_attempt_at=utcnow() + timedelta(seconds=retry_in_s)))

    def for_invocation(self, invocation_pk: int) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(DELIVERIES).where(DELIVERIES.c.invocation_pk == invocation_pk)
                                .order_by(DELIVERIES.c.id)).all()
        return [Delivery.from_row(r) for r in rows]

