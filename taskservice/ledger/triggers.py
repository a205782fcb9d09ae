"""TriggerStore: the Kafka triggers (event source mappings) in the ledger, and the lag the ingest processes report.

Lag is stored rather than computed on request: the API then answers without Kafka access, and several ingest
processes sharing a consumer group each merge the partitions they own into one document.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from taskservice.clock import utcnow
from taskservice.errors import TriggerNotFound
from taskservice.ledger.models import TRIGGERS
from taskservice.specs import TriggerConfig

#: A partition's lag entry older than this is dropped: its owner stopped reporting (moved or gone).
LAG_STALE_S = 120.0


@dataclass(frozen=True)
class Trigger:
    name: str
    function: str
    topics: list[str]
    consumer_group: str
    batch_size: int
    batching_window_s: float
    starting_position: str
    enabled: bool
    description: str
    lag: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Trigger:
        m = dict(row._mapping)
        m["topics"] = json.loads(m["topics"])
        m["lag"] = json.loads(m["lag"]) if m["lag"] else {}
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})

    @property
    def total_lag(self) -> int | None:
        """Records not yet committed, over the partitions last reported; None before the first report."""
        if not self.lag:
            return None
        return sum(int(entry["lag"]) for entry in self.lag.values())


def default_group(name: str) -> str:
    return f"taskservice-{name}"


class TriggerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, name: str, config: TriggerConfig) -> tuple[Trigger, bool]:
        """Create or replace a trigger; returns it and whether it was created. Reported lag survives a replace."""
        now = utcnow()
        values = config.model_dump()
        values["topics"] = json.dumps(values["topics"])
        values["consumer_group"] = values["consumer_group"] or default_group(name)
        with self.engine.begin() as conn:
            updated = conn.execute(update(TRIGGERS).where(TRIGGERS.c.name == name)
                                   .values(**values, updated_at=now)).rowcount
            if not updated:
                conn.execute(insert(TRIGGERS).values(name=name, **values, lag=None, created_at=now, updated_at=now))
            row = conn.execute(select(TRIGGERS).where(TRIGGERS.c.name == name)).one()
        return Trigger.from_row(row), not updated

    def get(self, name: str) -> Trigger:
        with self.engine.connect() as conn:
            row = conn.execute(select(TRIGGERS).where(TRIGGERS.c.name == name)).first()
        if row is None:
            raise TriggerNotFound(f"trigger {name!r} does not exist")
        return Trigger.from_row(row)

    def list(self, *, enabled_only: bool = False) -> list[Trigger]:
        query = select(TRIGGERS).order_by(TRIGGERS.c.name)
        if enabled_only:
            query = query.where(TRIGGERS.c.enabled.is_(True))
        with self.engine.connect() as conn:
            return [Trigger.from_row(r) for r in conn.execute(query)]

    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(delete(TRIGGERS).where(TRIGGERS.c.name == name)).rowcount:
                raise TriggerNotFound(f"trigger {name!r} does not exist")

    def report_lag(self, name: str, partitions: dict[str, dict[str, Any]]) -> None:
        """Merge one ingest process's partitions ("topic:partition" → {committed, high, lag, at}) into the row."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(TRIGGERS.c.lag).where(TRIGGERS.c.name == name).with_for_update()).first()
            if row is None:
                return
            merged: dict[str, Any] = json.loads(row.lag) if row.lag else {}
            cutoff = (now - timedelta(seconds=LAG_STALE_S)).isoformat()
            merged = {k: v for k, v in merged.items() if v.get("at", "") >= cutoff}
            merged.update({k: {**v, "at": now.isoformat()} for k, v in partitions.items()})
            conn.execute(update(TRIGGERS).where(TRIGGERS.c.name == name).values(lag=json.dumps(merged)))
