"""Dead letters that are not the outcome of an invocation: Kafka records that could never become one.

A non-UTF-8 value or a record over the payload limit cannot be submitted, but must not be lost or block its
partition: it gets a failure record (condition "Invalid") in the same store, replayable like any other, and the
ingest loop commits past it. Writing is idempotent on (function, invocation_id), so a record read again after a
crash does not get a second dead letter.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine, insert, select

from taskservice.clock import utcnow
from taskservice.errors import DeadLetterNotFound
from taskservice.ledger.destination_record import build_record
from taskservice.ledger.models import DEAD_LETTERS
from taskservice.ledger.records import DeadLetter
from taskservice.statuses import Condition


class DeadLetterStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, dead_letter_id: int) -> DeadLetter:
        with self.engine.connect() as conn:
            row = conn.execute(select(DEAD_LETTERS).where(DEAD_LETTERS.c.id == dead_letter_id)).first()
        if row is None:
            raise DeadLetterNotFound(f"dead letter {dead_letter_id} does not exist")
        return DeadLetter.from_row(row)

    def find(self, function: str, invocation_id: str) -> DeadLetter | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(DEAD_LETTERS).where(DEAD_LETTERS.c.function == function,
                                                          DEAD_LETTERS.c.invocation_id == invocation_id)
                               .order_by(DEAD_LETTERS.c.id).limit(1)).first()
        return None if row is None else DeadLetter.from_row(row)

    def reject(self, function: str, invocation_id: str, payload: str, *, error_type: str, error: str) -> DeadLetter:
        """Write the failure record of something that never became an invocation (condition "Invalid").

        `payload` is the JSON text that would have been submitted (it becomes requestPayload). One writer per
        partition (the consumer group guarantees it), so check-then-insert is enough for idempotence.
        """
        existing = self.find(function, invocation_id)
        if existing is not None:
            return existing
        now = utcnow()
        request_id = str(uuid.uuid4())
        record = build_record(function=function, request_id=request_id, condition=Condition.INVALID, attempts=0,
                              payload=payload, result=None, error_type=error_type, error=error, finished_at=now)
        record["responseContext"]["functionError"] = error_type
        values: dict[str, Any] = {"invocation_pk": None, "function": function, "invocation_id": invocation_id,
                  "request_id": request_id, "condition": Condition.INVALID, "error_type": error_type,
                  "record": json.dumps(record, separators=(",", ":"), ensure_ascii=False), "created_at": now}
        with self.engine.begin() as conn:
            pk = conn.execute(insert(DEAD_LETTERS).returning(DEAD_LETTERS.c.id), values).scalar_one()
        return DeadLetter(id=pk, **{k: v for k, v in values.items() if k in DeadLetter.__dataclass_fields__})
