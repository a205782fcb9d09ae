"""The ledger's current state as a handful of numbers for /metrics: read at scrape time from the ledger itself, so
every API process reports the same values and nothing has to be aggregated across processes.

Each query walks an index (status, pending deliveries, created_at) rather than the whole table, so a scrape stays
cheap on a ledger of millions of finished invocations.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, func, select

from taskservice.clock import utcnow
from taskservice.ledger.models import DELIVERIES, INVOCATIONS
from taskservice.ledger.states import TERMINAL, WAITING, Status

LIVE = tuple(s for s in Status if s not in TERMINAL)
RECENT = timedelta(minutes=5)


@dataclass(frozen=True)
class Gauges:
    live: dict[tuple[str, str], int]  # (function, status) -> invocations now waiting or running
    recent_finished: dict[tuple[str, str], int]  # (function, status) -> created in the last 5 minutes and ended
    oldest_waiting_s: float  # age of the oldest Enqueued/Retrying invocation (0 when none)
    outbox_pending: int  # destination records not yet delivered


def read_gauges(engine: Engine) -> Gauges:
    now = utcnow()
    with engine.connect() as conn:
        live = conn.execute(select(INVOCATIONS.c.function, INVOCATIONS.c.status, func.count())
                            .where(INVOCATIONS.c.status.in_(LIVE))
                            .group_by(INVOCATIONS.c.function, INVOCATIONS.c.status)).all()
        recent = conn.execute(select(INVOCATIONS.c.function, INVOCATIONS.c.status, func.count())
                              .where(INVOCATIONS.c.created_at >= now - RECENT,
                                     INVOCATIONS.c.status.in_(TERMINAL))
                              .group_by(INVOCATIONS.c.function, INVOCATIONS.c.status)).all()
        oldest = conn.execute(select(func.min(INVOCATIONS.c.created_at))
                              .where(INVOCATIONS.c.status.in_(WAITING))).scalar_one_or_none()
        pending = conn.execute(select(func.count()).select_from(DELIVERIES)
                               .where(DELIVERIES.c.status == "pending")).scalar_one()
    if isinstance(oldest, str):  # SQLite hands back text from an aggregate
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=timezone.utc)
    elif oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    return Gauges(live={(r[0], Status(r[1]).value): int(r[2]) for r in live},
                  recent_finished={(r[0], Status(r[1]).value): int(r[2]) for r in recent},
                  oldest_waiting_s=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
                  outbox_pending=int(pending))
