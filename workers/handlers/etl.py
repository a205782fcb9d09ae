"""Kafka ETL example: transforms a batch of records (Function Compute's Kafka shape) and returns them.

Each record's value is JSON text; the handler parses it, adds a computed field and returns one output per record,
so `--on-success queue:…` receives the processed batch. A record whose value has {"poison": true} fails the whole
batch on purpose, so the scenario can show a batch reaching `--on-failure` and its replay with an edited payload.
"""
from __future__ import annotations

import json
from typing import Any


class PoisonRecord(Exception):
    """A record the transformation refuses; the batch fails and lands on the failure destination."""


def transform(record: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(record["value"]) if record.get("value") else {}
    if isinstance(value, dict) and value.get("poison"):
        raise PoisonRecord(f"poison record at {record['topic']}/{record['partition']}@{record['offset']}")
    amount = value.get("amount", 0) if isinstance(value, dict) else 0
    return {"topic": record["topic"], "partition": record["partition"], "offset": record["offset"],
            "key": record.get("key"), "data": value, "amountCents": round(float(amount) * 100)}


def handler(event: Any, context: Any) -> list[dict[str, Any]]:
    records = event if isinstance(event, list) else []
    context.logger.info("transforming %d record(s)", len(records))
    out = [transform(r) for r in records]
    context.progress(100, f"{len(out)} record(s) transformed")
    return out
