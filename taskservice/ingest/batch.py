"""From consumed Kafka records to what the ledger gets: batch invocations, and dead letters for unusable records.

Pure functions, no I/O. A partition's records (in offset order) are cut into units: runs of valid records, each at
most `batch_size` records and at most the payload limit once encoded, become one invocation each; a record that
cannot be submitted (non-UTF-8 key or value, or too large on its own) becomes a dead letter. Every offset ends up
in exactly one unit, and each unit's id names its topic, partition and first/last offset.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from taskservice.kafka import KafkaRecord

_SAFE_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INVALID_RECORD = "InvalidRecord"
PAYLOAD_TOO_LARGE = "PayloadTooLarge"


def topic_token(topic: str) -> str:
    """The topic as it appears in invocation ids: itself when short and id-safe, else a hash (dots are not
    allowed in ids, and `a.b` must not collide with `a_b`)."""
    if _SAFE_TOPIC.fullmatch(topic):
        return topic
    return "h" + hashlib.sha256(topic.encode()).hexdigest()[:24]


def batch_prefix(topic: str, partition: int, first: int) -> str:
    return f"kafka_{topic_token(topic)}_{partition}_{first}_"


def batch_id(topic: str, partition: int, first: int, last: int) -> str:
    """`kafka_<topic>_<partition>_<first>_<last>`: at most 6+64+1+10+1+19+1+19 = 121 characters."""
    return f"{batch_prefix(topic, partition, first)}{last}"


def last_offset_of(invocation_id: str, prefix: str) -> int | None:
    tail = invocation_id[len(prefix):]
    return int(tail) if invocation_id.startswith(prefix) and tail.isdigit() else None


@dataclass(frozen=True)
class Unit:
    """One thing to write: an invocation (error_type None) or a dead letter, covering offsets first..last."""

    invocation_id: str
    first: int
    last: int
    payload: str  # JSON text of the list of records in Function Compute's Kafka shape
    error_type: str | None = None
    error: str | None = None


def _encode(record: KafkaRecord, *, binary: bool = False) -> str:
    value = record.value or b""
    shaped = {
        "key": None if record.key is None else (base64.b64encode(record.key).decode() if binary
                                                else record.key.decode("utf-8")),
        "offset": record.offset, "overflowFlag": False, "partition": record.partition,
        "timestamp": record.timestamp_ms, "topic": record.topic,
        "value": None if record.value is None else (base64.b64encode(value).decode() if binary
                                                    else value.decode("utf-8")),
        "valueSize": len(value)}
    if binary:
        shaped["encoding"] = "base64"
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False)


def plan(records: Sequence[KafkaRecord], *, batch_size: int, max_payload_bytes: int) -> list[Unit]:
    """Cut one partition's records (offset order) into units; see the module docstring."""
    units: list[Unit] = []
    texts: list[str] = []
    chunk: list[KafkaRecord] = []
    size = 2  # the brackets

    def flush() -> None:
        nonlocal size
        if chunk:
            first, last = chunk[0], chunk[-1]
            units.append(Unit(batch_id(first.topic, first.partition, first.offset, last.offset), first.offset,
                              last.offset, "[" + ",".join(texts) + "]"))
        chunk.clear()
        texts.clear()
        size = 2

    for record in records:
        try:
            text = _encode(record)
        except UnicodeDecodeError as exc:
            flush()
            units.append(_reject(record, INVALID_RECORD,
                                 f"the record's {'key' if _bad_key(record) else 'value'} is not UTF-8 text "
                                 f"({exc.reason} at byte {exc.start}); values are passed to functions as text"))
            continue
        length = len(text.encode())
        if length + 2 > max_payload_bytes:
            flush()
            units.append(_reject(record, PAYLOAD_TOO_LARGE,
                                 f"the record alone is {length + 2} bytes as a batch payload; the limit is "
                                 f"{max_payload_bytes} bytes (TASKSERVICE_MAX_PAYLOAD_BYTES)", text=text))
            continue
        if chunk and (len(chunk) >= batch_size or size + 1 + length > max_payload_bytes):
            flush()
        size += length + (1 if chunk else 0)
        chunk.append(record)
        texts.append(text)
    flush()
    return units


def _bad_key(record: KafkaRecord) -> bool:
    try:
        (record.key or b"").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _reject(record: KafkaRecord, error_type: str, error: str, *, text: str | None = None) -> Unit:
    payload = "[" + (text if text is not None else _encode(record, binary=True)) + "]"
    return Unit(batch_id(record.topic, record.partition, record.offset, record.offset), record.offset,
                record.offset, payload, error_type, error)


def by_partition(records: Iterable[KafkaRecord]) -> dict[tuple[str, int], list[KafkaRecord]]:
    """Group records per (topic, partition), keeping each partition's offset order."""
    groups: dict[tuple[str, int], list[KafkaRecord]] = {}
    for record in records:
        groups.setdefault((record.topic, record.partition), []).append(record)
    return groups
