"""Read-only aggregate and listing queries for the console.

Everything here is built to stay fast on a ledger of millions of invocations:
- lists walk the primary key newest first (keyset), in both directions ("older" and "newer" pages);
- a time window becomes an id range first (ids grow with created_at), so a window in the past is an index range
  scan, not a walk from the newest row;
- counts per status are capped: each status counts at most `cap + 1` index entries, so the answer is exact up to
  the cap and "more than cap" beyond it, in bounded time whatever the filter;
- function health looks at a bounded sample (the most recent ended invocations of each function).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Integer, Select, and_, cast, false, func, select

from taskservice.clock import utcnow
from taskservice.ledger.models import INVOCATIONS, LOGS
from taskservice.ledger.queries import InvocationFilter, decode_cursor, encode_cursor, starts_with
from taskservice.ledger.states import TERMINAL, Status

I = INVOCATIONS  # noqa: E741 - the one table most statements here read
#: Rows are inserted within milliseconds of their created_at; an id bound taken this much wider than the window
#: can never cut off a row that belongs to it. The created_at condition itself stays, so the result is exact.
ID_BOUND_SLACK = timedelta(seconds=60)
LIST_COLUMNS = (I.c.id, I.c.function, I.c.invocation_id, I.c.status, I.c.attempts, I.c.created_at, I.c.started_at,
                I.c.finished_at, I.c.progress_percent, I.c.error_type, I.c.condition, I.c.parent_pk)


@dataclass(frozen=True)
class ListedInvocation:
    """One row of the console's list: no payload or result, so a page of 200 stays small."""

    pk: int
    function: str
    invocation_id: str
    status: Status
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress_percent: float | None
    error_type: str | None
    condition: str | None
    parent_pk: int | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class ConsolePage:
    items: list[ListedInvocation]
    older: str | None  # cursor of the next page towards older invocations
    newer: str | None  # cursor of the next page towards newer ones; None on the newest page


@dataclass(frozen=True)
class FunctionHealth:
    """Recent health of one function, over its most recent ended invocations in the window."""

    function: str
    ended: int
    succeeded: int
    p50_s: float | None
    p95_s: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.ended == 0 else self.succeeded / self.ended


@dataclass(frozen=True)
class MinuteBucket:
    start: datetime
    counts: dict[Status, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class LogEntry:
    id: int
    attempt: int
    at: datetime
    level: str
    message: str


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class ConsoleStats:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- filters ----------------------------------------------------------------------------------------------------
    def _conditions(self, conn: Connection, flt: InvocationFilter, *, statuses: bool = True
                    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if flt.function:
            where.append(I.c.function == flt.function)
        if statuses and flt.statuses:
            where.append(I.c.status.in_(flt.statuses))
        if flt.prefix:
            where.append(starts_with(I.c.invocation_id, flt.prefix))
        if flt.since is not None:
            lo = conn.execute(select(I.c.id).where(I.c.created_at >= flt.since - ID_BOUND_SLACK)
                              .order_by(I.c.created_at).limit(1)).scalar()
            where += [false()] if lo is None else [I.c.id >= lo, I.c.created_at >= flt.since]
        if flt.until is not None:
            hi = conn.execute(select(I.c.id).where(I.c.created_at < flt.until + ID_BOUND_SLACK)
                              .order_by(I.c.created_at.desc()).limit(1)).scalar()
            where += [false()] if hi is None else [I.c.id <= hi, I.c.created_at < flt.until]
        return where

    # --- the list ---------------------------------------------------------------------------------------------------
    def page(self, flt: InvocationFilter, *, limit: int = 50, older: str | None = None,
             newer: str | None = None) -> ConsolePage:
        """A page of invocations, newest first. `older`/`newer` are cursors from a previous page; a "newer" page
        that is not full is the newest page, so it is answered as the first page."""
        with self.engine.connect() as conn:
            where = self._conditions(conn, flt)
            query: Select[Any] = select(*LIST_COLUMNS).where(*where).limit(limit + 1)
            if newer is not None:
                rows = conn.execute(query.where(I.c.id > decode_cursor(newer)).order_by(I.c.id)).all()
                if len(rows) > limit:
                    items = [_listed(r) for r in reversed(rows[:limit])]
                    return ConsolePage(items, encode_cursor(items[-1].pk), encode_cursor(items[0].pk))
                older = None
            if older is not None:
                query = query.where(I.c.id < decode_cursor(older))
            rows = conn.execute(query.order_by(I.c.id.desc())).all()
        items = [_listed(r) for r in rows[:limit]]
        return ConsolePage(items, encode_cursor(items[-1].pk) if len(rows) > limit else None,
                           encode_cursor(items[0].pk) if older is not None and items else None)

    def status_counts(self, flt: InvocationFilter, *, cap: int = 10_000) -> dict[Status, int]:
        """Invocations per status under the filter's other conditions (its statuses are ignored, so every status
        shows how many it would add), each counted up to cap + 1: a value above `cap` means "more than cap"."""
        with self.engine.connect() as conn:
            where = self._conditions(conn, flt, statuses=False)
            columns = [select(func.count()).select_from(
                select(I.c.id).where(*where, I.c.status == status).limit(cap + 1).subquery())
                .scalar_subquery().label(status.name) for status in Status]
            row = conn.execute(select(*columns)).one()
        return {status: int(row._mapping[status.name]) for status in Status}

    # --- one invocation ---------------------------------------------------------------------------------------------
    def logs_after(self, pk: int, after_id: int = 0, *, limit: int = 1000) -> list[LogEntry]:
        """Log lines with their ids, so the console's live view can ask only for lines it has not shown yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(LOGS.c.id, LOGS.c.attempt, LOGS.c.at, LOGS.c.level, LOGS.c.message)
                                .where(LOGS.c.invocation_pk == pk, LOGS.c.id > after_id)
                                .order_by(LOGS.c.id).limit(limit)).all()
        return [LogEntry(id=r.id, attempt=r.attempt, at=r.at, level=r.level, message=r.message) for r in rows]

    # --- functions and the dashboard --------------------------------------------------------------------------------
    def function_health(self, functions: list[str], *, window: timedelta = timedelta(hours=24),
                        sample: int = 1000) -> dict[str, FunctionHealth]:
        """Success rate and p50/p95 duration of the ended ones among each function's `sample` most recent
        invocations created in the window. Bounded work per function however large the ledger; percentiles are
        computed here, identically on SQLite and Postgres."""
        since = utcnow() - window
        health: dict[str, FunctionHealth] = {}
        with self.engine.connect() as conn:
            bounds = self._conditions(conn, InvocationFilter(since=since))
            for name in functions:
                if conn.dialect.name == "postgresql":
                    health[name] = self._health_in_sql(conn, name, bounds, sample)
                    continue
                # Newest first on (function, id), ended ones picked here: a status IN () would make Postgres
                # merge several index ranges and sort them, hundreds of ms on a large ledger.
                rows = [r for r in conn.execute(select(I.c.status, I.c.started_at, I.c.finished_at)
                                                .where(*bounds, I.c.function == name)
                                                .order_by(I.c.id.desc()).limit(sample))
                        if Status(r.status) in TERMINAL]
                durations = sorted((r.finished_at - r.started_at).total_seconds() for r in rows
                                   if r.started_at is not None and r.finished_at is not None
                                   and Status(r.status) in (Status.SUCCEEDED, Status.FAILED))
                health[name] = FunctionHealth(function=name, ended=len(rows),
                                              succeeded=sum(Status(r.status) is Status.SUCCEEDED for r in rows),
                                              p50_s=percentile(durations, 0.50), p95_s=percentile(durations, 0.95))
        return health

    @staticmethod
    def _health_in_sql(conn: Connection, name: str, bounds: list[ColumnElement[bool]], sample: int
                       ) -> FunctionHealth:
        """The same figures computed by Postgres over the same sample (percentile_disc is the nearest-rank
        percentile), so a thousand rows per function never travel to Python."""
        recent = (select(I.c.status, I.c.started_at, I.c.finished_at).where(*bounds, I.c.function == name)
                  .order_by(I.c.id.desc()).limit(sample).subquery())
        timed = and_(recent.c.status.in_([Status.SUCCEEDED, Status.FAILED]), recent.c.started_at.isnot(None),
                     recent.c.finished_at.isnot(None))
        seconds = func.extract("epoch", recent.c.finished_at - recent.c.started_at)
        row = conn.execute(select(
            func.count().filter(recent.c.status.in_(TERMINAL)),
            func.count().filter(recent.c.status == Status.SUCCEEDED),
            func.percentile_disc(0.5).within_group(seconds).filter(timed),
            func.percentile_disc(0.95).within_group(seconds).filter(timed))).one()
        return FunctionHealth(function=name, ended=int(row[0]), succeeded=int(row[1]),
                              p50_s=None if row[2] is None else float(row[2]),
                              p95_s=None if row[3] is None else float(row[3]))

    def per_minute(self, *, minutes: int = 60, now: datetime | None = None) -> list[MinuteBucket]:
        """Invocations created in each of the last `minutes` minutes, by their current status (oldest first)."""
        now = now or utcnow()
        first = int(now.timestamp()) // 60 - minutes + 1
        since = datetime.fromtimestamp(first * 60, timezone.utc)
        bucket = self._minute_bucket().label("bucket")
        with self.engine.connect() as conn:
            rows = conn.execute(select(bucket, I.c.status, func.count().label("n"))
                                .where(and_(*self._conditions(conn, InvocationFilter(since=since))))
                                .group_by(bucket, I.c.status)).all()
        counts: dict[int, dict[Status, int]] = {first + i: {} for i in range(minutes)}
        for row in rows:
            if int(row.bucket) in counts:
                counts[int(row.bucket)][Status(row.status)] = int(row.n)
        return [MinuteBucket(datetime.fromtimestamp(minute * 60, timezone.utc), c) for minute, c in counts.items()]

    def _minute_bucket(self) -> ColumnElement[Any]:
        """Minutes since the epoch of created_at: the one expression the two databases spell differently.

        Both must floor, never divide truly or round: SQLAlchemy 2 renders `/` on integers as true division, which
        on SQLite made every row its own group, and a cast of Postgres's fractional epoch rounds 12:00:59.7 into
        12:01. SQLite's `%s` is already whole seconds, so integer division (`//`) floors it."""
        if self.engine.dialect.name == "sqlite":
            return cast(func.strftime("%s", I.c.created_at), Integer) // 60
        return cast(func.floor(func.extract("epoch", I.c.created_at) / 60), Integer)


def _listed(row: Any) -> ListedInvocation:
    m = row._mapping
    return ListedInvocation(pk=m["id"], function=m["function"], invocation_id=m["invocation_id"],
                            status=Status(m["status"]), attempts=m["attempts"], created_at=m["created_at"],
                            started_at=m["started_at"], finished_at=m["finished_at"],
                            progress_percent=m["progress_percent"], error_type=m["error_type"],
                            condition=m["condition"], parent_pk=m["parent_pk"])
