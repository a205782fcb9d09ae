"""taskservice.kafka against a real Kafka-protocol broker (Tansu): topics, batches, outages and consumer groups."""
from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from taskservice.kafka import DELIVERY_TIMEOUT_MS, KafkaPublisher, KafkaRecord, KafkaUnavailable, ensure_topic, tail

if TYPE_CHECKING:
    from tests.kafka_broker import KafkaBroker


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    ensure_topic(bootstrap, topic, partitions)
    return topic


def read_all(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[KafkaRecord]:
    return list(tail(bootstrap, topic, from_beginning=True, group=None, timeout_s=idle_s))


@pytest.fixture
def publisher(kafka_broker: KafkaBroker) -> Iterator[KafkaPublisher]:
    pub = KafkaPublisher(kafka_broker.bootstrap)
    yield pub
    pub.close()


def test_ensure_topic_twice_is_fine(kafka_broker: KafkaBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_broker.bootstrap, topic, partitions=3)
    ensure_topic(kafka_broker.bootstrap, topic, partitions=3)
    assert read_all(kafka_broker.bootstrap, topic, idle_s=0.5) == []  # the topic exists and is empty


def test_tail_of_a_missing_topic_says_so(kafka_broker: KafkaBroker) -> None:
    with pytest.raises(KafkaUnavailable, match="no such topic"):  # and no auto-creation by a consumer
        read_all(kafka_broker.bootstrap, f"missing-{uuid.uuid4().hex[:10]}")


def test_ensure_topic_without_a_cluster_raises_in_bounded_time(free_port: Any) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # a free port nobody listens on
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable):
        ensure_topic(nobody, "nowhere", timeout_s=2)
    assert time.monotonic() - started < 10


def test_500_keyed_messages_round_trip_in_order_per_partition(kafka_broker: KafkaBroker,
                                                              publisher: KafkaPublisher) -> None:
    topic = new_topic(kafka_broker.bootstrap, partitions=3)
    messages = [(f"key-{i % 17}".encode(), json.dumps({"seq": i, "text": "é" * (i % 5)}).encode())
                for i in range(500)]

    assert publisher.publish_batch(topic, messages) == [None] * 500

    records = read_all(kafka_broker.bootstrap, topic)
    assert sorted((r.key, r.value) for r in records) == sorted(messages)  # all 500, intact, none twice
    assert {r.partition for r in records} == {0, 1, 2}
    by_partition: dict[int, list[KafkaRecord]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
        assert record.topic == topic and record.timestamp_ms and record.timestamp_ms > 1_600_000_000_000
    for partition_records in by_partition.values():
        offsets = [r.offset for r in partition_records]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        seqs = [json.loads(r.value or b"")["seq"] for r in partition_records]
        assert seqs == sorted(seqs)  # produced order is kept within a partition
    key_partitions = {(r.key, r.partition) for r in records}
    assert len(key_partitions) == 17  # one partition per key


def test_a_full_local_queue_is_waited_out_not_failed(kafka_broker: KafkaBroker) -> None:
    topic = new_topic(kafka_broker.bootstrap)
    pub = KafkaPublisher(kafka_broker.bootstrap, {"queue.buffering.max.messages": 20})
    try:
        assert pub.publish_batch(topic, [(None, b"%d" % i) for i in range(300)]) == [None] * 300
    finally:
        pub.close()
    assert [r.value for r in read_all(kafka_broker.bootstrap, topic)] == [b"%d" % i for i in range(300)]


def test_one_bad_message_does_not_fail_its_batch(kafka_broker: KafkaBroker, publisher: KafkaPublisher) -> None:
    topic = new_topic(kafka_broker.bootstrap)
    results = publisher.publish_batch(topic, [(b"a", b"small"), (b"b", b"x" * 2_000_000), (b"c", b"also small")])
    assert results[0] is None and results[2] is None
    assert results[1] is not None and results[1].startswith("MSG_SIZE_TOO_LARGE")
    assert [r.value for r in read_all(kafka_broker.bootstrap, topic)] == [b"small", b"also small"]


@pytest.mark.slow
def test_broker_down_gives_bounded_errors_then_publishing_recovers(own_kafka_broker: KafkaBroker) -> None:
    topic = new_topic(own_kafka_broker.bootstrap, partitions=2)
    pub = KafkaPublisher(own_kafka_broker.bootstrap)
    try:
        assert pub.publish_batch(topic, [(b"k", b"before")]) == [None]

        own_kafka_broker.stop()
        started = time.monotonic()
        try:
            results = pub.publish_batch(topic, [(b"k%d" % i, b"down") for i in range(20)])
        except KafkaUnavailable:
            results = ["unavailable"] * 20
        elapsed = time.monotonic() - started
        assert all(r is not None for r in results), results
        assert elapsed < DELIVERY_TIMEOUT_MS / 1000 + 6, elapsed

        own_kafka_broker.restart()  # in-memory storage: the topic and the broker's producer ids are gone
        ensure_topic(own_kafka_broker.bootstrap, topic, partitions=2)
        assert pub.publish_batch(topic, [(b"k%d" % i, b"after %d" % i) for i in range(20)]) == [None] * 20
    finally:
        pub.close()
    values = sorted(r.value or b"" for r in read_all(own_kafka_broker.bootstrap, topic))
    assert values == sorted(b"after %d" % i for i in range(20))


def test_publisher_for_a_dead_address_errors_in_bounded_time(free_port: Any) -> None:
    pub = KafkaPublisher(f"127.0.0.1:{free_port()}", {"message.timeout.ms": 2000})
    started = time.monotonic()
    results = pub.publish_batch("nowhere", [(None, b"x")] * 3)
    assert all(r and r.startswith("_MSG_TIMED_OUT") for r in results), results
    assert time.monotonic() - started < DELIVERY_TIMEOUT_MS / 1000 + 6
    pub.close(timeout_s=0)


@pytest.mark.slow
def test_consumer_group_continues_from_its_committed_offsets(kafka_broker: KafkaBroker,
                                                             publisher: KafkaPublisher) -> None:
    topic = new_topic(kafka_broker.bootstrap, partitions=2)
    sent = [(b"k%d" % (i % 5), b"%d" % i) for i in range(100)]
    assert publisher.publish_batch(topic, sent) == [None] * 100
    group = f"g-{uuid.uuid4().hex[:8]}"

    def run(limit: int | None) -> list[KafkaRecord]:
        records = tail(kafka_broker.bootstrap, topic, from_beginning=True, group=group, timeout_s=2)
        with contextlib.closing(records):  # closing the consumer commits what was yielded
            return list(itertools.islice(records, limit))

    first = run(40)
    second = run(None)
    third = run(None)

    assert len(first) == 40 and len(second) == 60 and third == []
    positions = [(r.partition, r.offset) for r in first + second]
    assert len(set(positions)) == 100
    assert sorted((r.key, r.value) for r in first + second) == sorted(sent)
    for partition in (0, 1):  # the second run starts right after the first run's last record, per partition
        done = [r.offset for r in first if r.partition == partition]
        rest = [r.offset for r in second if r.partition == partition]
        if done and rest:
            assert min(rest) == max(done) + 1
