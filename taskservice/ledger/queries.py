"""Read-only ledger queries: listing with keyset pagination, single reads, history and logs."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, Table, and_, func, select

from taskservice.errors import FunctionNotFound, InvalidQuery, InvocationNotFound
from taskservice.ledger.models import DEAD_LETTERS, FUNCTIONS, INVOCATIONS, LOGS, TRANSITIONS
from taskservice.ledger.records import DeadLetter, Function, Invocation, LogLine, Page, Transition
from taskservice.ledger.states import Status


@dataclass(frozen=True)
class InvocationFilter:
    function: str | None = None
    statuses: tuple[Status, ...] = ()
    prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def starts_with(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """Case-sensitive prefix match on both backends. LIKE lets Postgres walk the pattern index; the exact substring
    comparison keeps SQLite (whose LIKE ignores case) from matching 'Batch' for 'batch'."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return and_(column.like(f"{escaped}%", escape="\\"), func.substr(column, 1, len(prefix)) == prefix)


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, pk = text.partition(":")
        if version != "v1":
            raise ValueError(version)
        return int(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidQuery(f"invalid cursor {cursor!r}: pass back the next_cursor of a previous page") from None


def newest_first(engine: Engine, table: Table, conditions: Sequence[ColumnElement[bool] | None], *, limit: int,
                 cursor: str | None) -> tuple[list[Row[Any]], str | None]:
    """One page of `table` newest first by primary key, where every condition given (None: not filtered) holds:
    keyset pagination that stays fast however deep the page. Returns the rows and the next page's cursor."""
    query = (select(table).where(*(c for c in conditions if c is not None)).order_by(table.c.id.desc())
             .limit(limit + 1))
    if cursor:
        query = query.where(table.c.id < decode_cursor(cursor))
    with engine.connect() as conn:
        rows = list(conn.execute(query).all())
    return rows[:limit], (encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)


class LedgerQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_function(self, name: str) -> Function:
        with self.engine.connect() as conn:
            row = conn.execute(select(FUNCTIONS).where(FUNCTIONS.c.name == name)).first()
        if row is None:
            raise FunctionNotFound(f"function {name!r} does not exist")
        return Function.from_row(row)

    def list_functions(self) -> list[Function]:
        with self.engine.connect() as conn:
            return [Function.from_row(r) for r in conn.execute(select(FUNCTIONS).order_by(FUNCTIONS.c.name))]

    def find_invocation(self, function: str, invocation_id: str) -> Invocation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(INVOCATIONS).where(INVOCATIONS.c.function == function,
                                                         INVOCATIONS.c.invocation_id == invocation_id)).first()
        return None if row is None else Invocation.from_row(row)

    def get_invocation(self, function: str, invocation_id: str) -> Invocation:
        found = self.find_invocation(function, invocation_id)
        if found is None:
            raise InvocationNotFound(f"function {function!r} has no invocation {invocation_id!r}")
        return found

    def invocation_ids_with_prefix(self, function: str, prefix: str, *, limit: int = 10) -> list[str]:
        """Invocation ids of `function` starting with `prefix`, newest first (Kafka ingest finds the batches it
        submitted before a crash this way; it asks once per partition assignment, not per batch)."""
        query = (select(INVOCATIONS.c.invocation_id)
                 .where(INVOCATIONS.c.function == function, starts_with(INVOCATIONS.c.invocation_id, prefix))
                 .order_by(INVOCATIONS.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [r.invocation_id for r in conn.execute(query)]

    def get_by_pk(self, pk: int) -> Invocation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(INVOCATIONS).where(INVOCATIONS.c.id == pk)).first()
        return None if row is None else Invocation.from_row(row)

    def children(self, pk: int) -> list[Invocation]:
        """Invocations fanned out by `pk`, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(INVOCATIONS).where(INVOCATIONS.c.parent_pk == pk)
                                .order_by(INVOCATIONS.c.id)).all()
        return [Invocation.from_row(r) for r in rows]

    def current_status(self, pk: int, attempt: int) -> Status | None:
        """The status of attempt `attempt`; None once another attempt (or nobody) owns the invocation."""
        with self.engine.connect() as conn:
            row = conn.execute(select(INVOCATIONS.c.status).where(INVOCATIONS.c.id == pk,
                                                                  INVOCATIONS.c.attempts == attempt)).first()
        return None if row is None else Status(row.status)

    def list_invocations(self, flt: InvocationFilter, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Newest first (newest_first)."""
        c = INVOCATIONS.c
        rows, next_cursor = newest_first(self.engine, INVOCATIONS, [
            c.function == flt.function if flt.function else None,
            c.status.in_(flt.statuses) if flt.statuses else None,
            starts_with(c.invocation_id, flt.prefix) if flt.prefix else None,
            c.created_at >= flt.since if flt.since else None,
            c.created_at < flt.until if flt.until else None], limit=limit, cursor=cursor)
        return Page(items=[Invocation.from_row(r) for r in rows], next_cursor=next_cursor)

    def list_dead_letters(self, *, function: str | None = None, condition: str | None = None,
                          since: datetime | None = None, until: datetime | None = None, limit: int = 50,
                          cursor: str | None = None) -> tuple[list[DeadLetter], str | None]:
        """Failure records, newest first (newest_first)."""
        c = DEAD_LETTERS.c
        rows, next_cursor = newest_first(self.engine, DEAD_LETTERS, [
            c.function == function if function else None,
            c.condition == condition if condition else None,
            c.created_at >= since if since else None,
            c.created_at < until if until else None], limit=limit, cursor=cursor)
        return [DeadLetter.from_row(r) for r in rows], next_cursor

    def transitions(self, pk: int) -> list[Transition]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(TRANSITIONS).where(TRANSITIONS.c.invocation_pk == pk)
                                .order_by(TRANSITIONS.c.id)).all()
        return [Transition(from_status=None if r.from_status is None else Status(r.from_status),
                           to_status=Status(r.to_status), attempt=r.attempt, reason=r.reason, at=r.at) for r in rows]

    def logs(self, pk: int, *, attempt: int | None = None) -> list[LogLine]:
        query = select(LOGS).where(LOGS.c.invocation_pk == pk).order_by(LOGS.c.id)
        if attempt is not None:
            query = query.where(LOGS.c.attempt == attempt)
        with self.engine.connect() as conn:
            return [LogLine(attempt=r.attempt, at=r.at, level=r.level, message=r.message)
                    for r in conn.execute(query)]
