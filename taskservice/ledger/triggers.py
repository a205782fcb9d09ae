"""TriggerStore: the triggers in the ledger (Kafka event source mappings, timers, storage and queue triggers), the lag
the ingest processes report and the state the scheduler, the queue consumer and storage events record.

Lag is stored rather than computed on request: the API then answers without Kafka access, and several ingest
processes sharing a consumer group each merge the partitions they own into one document.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from taskservice.clock import utcnow
from taskservice.errors import TriggerNotFound
from taskservice.ledger.models import TRIGGERS
from taskservice.trigger_specs import AnyTriggerConfig, QueueConfig, StorageConfig, TimerConfig, TriggerConfig

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
    kind: str = "kafka"
    config: dict[str, Any] = field(default_factory=dict)  # the kind's own settings (timer, storage, queue)
    state: dict[str, Any] = field(default_factory=dict)
    state_text: str | None = None  # the state as stored, for compare-and-swap updates

    @classmethod
    def from_row(cls, row: Any) -> Trigger:
        m = dict(row._mapping)
        m["topics"] = json.loads(m["topics"])
        m["lag"] = json.loads(m["lag"]) if m["lag"] else {}
        m["config"] = json.loads(m["config"]) if m.get("config") else {}
        m["state_text"] = m.get("state")
        m["state"] = json.loads(m["state"]) if m.get("state") else {}
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})

    def spec(self) -> AnyTriggerConfig:
        """The trigger's settings as the model its kind validates with."""
        common: dict[str, Any] = {"function": self.function, "enabled": self.enabled,
                                  "description": self.description}
        models: dict[str, type[AnyTriggerConfig]] = {"timer": TimerConfig, "storage": StorageConfig,
                                                     "queue": QueueConfig}
        if self.kind in models:
            return models[self.kind].model_validate({"kind": self.kind, **common, **self.config})
        return TriggerConfig.model_validate({**common, "topics": self.topics, "consumer_group": self.consumer_group,
                                             "batch_size": self.batch_size,
                                             "batching_window_s": self.batching_window_s,
                                             "starting_position": self.starting_position})

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

    def put(self, name: str, config: AnyTriggerConfig) -> tuple[Trigger, bool]:
        """Create or replace a trigger; returns it and whether it was created. Reported lag survives a replace, and
        so does the state unless the kind changed."""
        now = utcnow()
        values = _columns(name, config)
        with self.engine.begin() as conn:
            old = conn.execute(select(TRIGGERS.c.kind).where(TRIGGERS.c.name == name)).first()
            if old is not None and old.kind != values["kind"]:
                values["state"] = None
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

    def list(self, *, enabled_only: bool = False, kind: str | None = None) -> list[Trigger]:
        query = select(TRIGGERS).order_by(TRIGGERS.c.name)
        if enabled_only:
            query = query.where(TRIGGERS.c.enabled.is_(True))
        if kind is not None:
            query = query.where(TRIGGERS.c.kind == kind)
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

    def swap_state(self, name: str, expected: str | None, state: dict[str, Any]) -> bool:
        """Replace the trigger's state only if it is still `expected` (its stored text): several schedulers or
        consumers may update one trigger, and only one of them wins each step. Returns whether this one did."""
        where = TRIGGERS.c.state.is_(None) if expected is None else TRIGGERS.c.state == expected
        with self.engine.begin() as conn:
            return bool(conn.execute(update(TRIGGERS).where(TRIGGERS.c.name == name, where)
                                     .values(state=json.dumps(state, sort_keys=True))).rowcount)

    def bump_state(self, name: str, *, add: dict[str, int] | None = None, values: dict[str, Any] | None = None
                   ) -> None:
        """Add to counters (`add`) and set values (`values`) in the state, under a row lock: for what several API
        or consumer processes record at once."""
        with self.engine.begin() as conn:
            row = conn.execute(select(TRIGGERS.c.state).where(TRIGGERS.c.name == name).with_for_update()).first()
            if row is None:
                return
            state: dict[str, Any] = json.loads(row.state) if row.state else {}
            for key, amount in (add or {}).items():
                state[key] = int(state.get(key, 0)) + amount
            state.update(values or {})
            conn.execute(update(TRIGGERS).where(TRIGGERS.c.name == name)
                         .values(state=json.dumps(state, sort_keys=True)))


def _columns(name: str, config: AnyTriggerConfig) -> dict[str, Any]:
    """The row of a trigger: Kafka's settings in their columns; the other kinds' in `config` (the topic columns
    get neutral values, so the Kafka ingest never picks them up — it lists kind kafka only)."""
    if isinstance(config, TriggerConfig):
        values = config.model_dump()
        values["topics"] = json.dumps(values["topics"])
        values["consumer_group"] = values["consumer_group"] or default_group(name)
        values["config"] = None
        return values
    own = config.model_dump(exclude={"kind", "function", "enabled", "description"})
    return {"kind": config.kind, "function": config.function, "enabled": config.enabled,
            "description": config.description, "topics": "[]", "consumer_group": "",
            "batch_size": own.get("batch_size", 1), "batching_window_s": own.get("batching_window_s", 0.0),
            "starting_position": "", "config": json.dumps(own, sort_keys=True)}
