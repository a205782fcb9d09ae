"""The planner that cuts a partition's records into batch invocations and dead letters."""
from __future__ import annotations

import json

from taskservice.ingest.batch import batch_id, last_offset_of, plan, topic_token
from taskservice.kafka import KafkaRecord
from taskservice.specs import INVOCATION_ID


def rec(offset: int, value: bytes | None = b'{"a":1}', key: bytes | None = b"k") -> KafkaRecord:
    return KafkaRecord(topic="orders", partition=2, offset=offset, key=key, value=value, timestamp_ms=1000 + offset)


def test_ids_are_valid_and_long_or_dotted_topics_are_hashed() -> None:
    assert batch_id("orders", 2, 10, 19) == "kafka_orders_2_10_19"
    for topic in ("a.b", "x" * 249, "a_b"):
        ident = batch_id(topic, 2_147_483_647, 2**63 - 1, 2**63 - 1)
        assert INVOCATION_ID.fullmatch(ident), ident
    assert topic_token("a.b") != topic_token("a_b")
    assert last_offset_of("kafka_orders_2_10_19", "kafka_orders_2_10_") == 19


def test_records_in_function_compute_kafka_shape_and_batch_size() -> None:
    units = plan([rec(i) for i in range(5)], batch_size=2, max_payload_bytes=10_000)
    assert [(u.first, u.last) for u in units] == [(0, 1), (2, 3), (4, 4)]
    first = json.loads(units[0].payload)[0]
    assert first == {"key": "k", "offset": 0, "overflowFlag": False, "partition": 2, "timestamp": 1000,
                     "topic": "orders", "value": '{"a":1}', "valueSize": 7}


def test_bad_records_become_dead_letter_units_and_split_the_batch() -> None:
    units = plan([rec(0), rec(1, b"\xff"), rec(2), rec(3, b"x" * 500), rec(4, key=b"\xfe")],
                 batch_size=100, max_payload_bytes=300)
    assert [(u.first, u.last, u.error_type) for u in units] == [
        (0, 0, None), (1, 1, "InvalidRecord"), (2, 2, None), (3, 3, "PayloadTooLarge"), (4, 4, "InvalidRecord")]
    assert "value is not UTF-8" in (units[1].error or "") and "key is not UTF-8" in (units[4].error or "")
    assert json.loads(units[1].payload)[0]["encoding"] == "base64"


def test_payload_limit_cuts_batches() -> None:
    units = plan([rec(i) for i in range(10)], batch_size=100, max_payload_bytes=400)
    assert all(len(u.payload.encode()) <= 400 for u in units) and len(units) > 1
    assert [o for u in units for o in range(u.first, u.last + 1)] == list(range(10))
