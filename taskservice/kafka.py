"""The one boundary to confluent-kafka: publishing batches, creating topics and tailing a topic.

Client settings (idempotence, timeouts, partitioner) are chosen here once, and a dead broker surfaces as a bounded
error rather than a hang. librdkafka's own log lines go to the `taskservice.kafka` logger instead of stderr.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from taskservice.errors import TaskServiceError

log = logging.getLogger(__name__)

#: How long one message may wait for its acknowledgement before its delivery report says it failed.
DELIVERY_TIMEOUT_MS = 10_000

# Idempotent and fully acknowledged, so librdkafka's retries never duplicate or reorder a partition's records.
# murmur2_random is the Java client's partitioner: a record keyed by requestId lands where a Java producer puts it.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True, "acks": "all", "linger.ms": 10, "compression.type": "lz4",
    "partitioner": "murmur2_random", "message.timeout.ms": DELIVERY_TIMEOUT_MS,
    "socket.connection.setup.timeout.ms": 5_000}

# Kafka refuses session timeouts under 6 s by default (group.min.session.timeout.ms), and a JoinGroup on Tansu is
# answered after half the session timeout: the smallest accepted value keeps a group consumer quick to start.
CONSUMER_GROUP_DEFAULTS: dict[str, Any] = {"session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_000}

_NO_REPORT = "no delivery report within the delivery timeout"


class KafkaUnavailable(TaskServiceError):
    """Kafka could not be used at all (no client, no cluster, no such topic): nothing was attempted."""

    code = "KafkaUnavailable"
    http_status = 503


@dataclass(frozen=True)
class KafkaRecord:
    """One consumed record, detached from the client library's Message type."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


def _describe(err: KafkaError) -> str:
    # The code's name first, so callers (and operators reading the ledger) can tell e.g. MSG_SIZE_TOO_LARGE apart.
    return f"{err.name()}: {err.str()}"


class KafkaPublisher:
    """A long-lived idempotent producer, meant to be shared by every `kafka:` destination of a process.

    One producer keeps one set of connections and one producer id. Not thread-safe: one batch at a time.
    """

    def __init__(self, bootstrap: str, config: Mapping[str, Any] | None = None) -> None:
        self._config = {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, "logger": log, **(config or {})}
        self._wait_s = float(self._config["message.timeout.ms"]) / 1000 + 5  # every report is due by then
        self._producer: Producer | None = None
        self._fatal: str | None = None

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> list[str | None]:
        """Produce every (key, value) and wait for all delivery reports; one entry per message, None = delivered.

        Per-message failures (timeouts, oversize records) come back as short strings starting with the Kafka error
        name, so the caller keeps those records for a later try. The wait is bounded by the delivery timeout.
        Raises KafkaUnavailable only when no producer could be made at all.
        """
        results = self._attempt(topic, messages)
        if self._fatal is not None:
            # The producer died under us (e.g. a broker that lost its state no longer knows our producer id). That
            # says nothing about the records: send the undelivered ones once more through a fresh producer. At
            # least once: a record whose fate was unknown may now exist twice, and records carry ids for that.
            retry = [i for i, result in enumerate(results) if result is not None]
            try:
                again = self._attempt(topic, [messages[i] for i in retry])
            except KafkaUnavailable:
                return results
            for i, result in zip(retry, again, strict=True):
                results[i] = result
        return results

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is still queued (bounded wait), then drop the producer."""
        if self._producer is not None:
            self._producer.flush(timeout_s)
            self._producer = None

    def _get_producer(self) -> Producer:
        if self._producer is not None and self._fatal is not None:  # a fatal error poisons a producer for good
            self._producer.purge()
            self._producer = None
        if self._producer is None:
            self._fatal = None
            try:
                self._producer = Producer({**self._config, "error_cb": self._on_error})
            except (KafkaException, ValueError, TypeError) as exc:
                raise KafkaUnavailable(f"cannot create a Kafka producer: {exc}") from exc
        return self._producer

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = _describe(err)

    def _attempt(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> list[str | None]:
        producer = self._get_producer()
        results: list[str | None] = [_NO_REPORT] * len(messages)
        pending = len(messages)

        def on_delivery(index: int, err: KafkaError | None, _msg: Any) -> None:
            nonlocal pending
            results[index] = None if err is None else _describe(err)
            pending -= 1

        try:
            for index, (key, value) in enumerate(messages):
                while True:
                    try:
                        producer.produce(topic, value=value, key=key, on_delivery=functools.partial(on_delivery, index))
                        break
                    except BufferError:  # the local queue is full: serve delivery reports to make room, then retry
                        producer.poll(0.1)
                    except KafkaException as exc:
                        if exc.args[0].fatal():
                            raise
                        results[index], pending = _describe(exc.args[0]), pending - 1
                        break
                producer.poll(0)
            deadline = time.monotonic() + self._wait_s
            while pending > 0 and time.monotonic() < deadline:
                # flush() sends at once instead of waiting out linger.ms, and serves the delivery reports
                producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
        except KafkaException as exc:  # fatal: report what is undelivered; the next attempt starts afresh
            self._fatal = _describe(exc.args[0])
            results = [self._fatal if result is _NO_REPORT else result for result in results]
        return results


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1, *, timeout_s: float = 10.0) -> None:
    """Create `topic` unless it exists; safe to call on every start-up."""
    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log}
    admin = AdminClient(settings)  # keep a reference: a collected client cancels its requests
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout_s, request_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s + 5)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise KafkaUnavailable(f"cannot create topic {topic!r}: {_describe(exc.args[0])}") from exc
    except TimeoutError as exc:
        raise KafkaUnavailable(f"cannot create topic {topic!r}: no answer within {timeout_s + 5}s") from exc


def tail(bootstrap: str, topic: str, *, from_beginning: bool, group: str | None, timeout_s: float | None,
         config: Mapping[str, Any] | None = None) -> Generator[KafkaRecord, None, None]:
    """Yield the records of `topic` as they arrive; stop after `timeout_s` seconds without one, if given.

    Without a group every partition is assigned directly: no group join, nothing committed. With a group the
    consumer joins it and, when the generator is closed, commits what it has yielded, so the next run with that
    group continues where this one stopped (`from_beginning` then only matters while nothing is committed).
    Raises KafkaUnavailable when the topic does not exist.
    """
    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log, "enable.partition.eof": False,
                                "auto.offset.reset": "earliest" if from_beginning else "latest",
                                "group.id": "taskservice-tail", "enable.auto.commit": False}
    if group is not None:
        settings.update(CONSUMER_GROUP_DEFAULTS, **{"group.id": group, "enable.auto.commit": True})
    settings.update(config or {})
    try:
        consumer = Consumer(settings)
    except (KafkaException, ValueError, TypeError) as exc:
        raise KafkaUnavailable(f"cannot create a Kafka consumer: {exc}") from exc
    # Joining a group takes a while (see CONSUMER_GROUP_DEFAULTS; Kafka delays a new group's first rebalance by
    # 3 s): the idle clock gets a session timeout's grace and starts afresh once partitions are assigned.
    grace_s = float(settings["session.timeout.ms"]) / 1000 if group is not None else 0.0
    last_activity = 0.0

    def on_assign(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        nonlocal last_activity
        last_activity = time.monotonic()

    try:
        if group is not None:
            consumer.subscribe([topic], on_assign=on_assign)
        else:
            consumer.assign(_all_partitions(consumer, topic, OFFSET_BEGINNING if from_beginning else OFFSET_END))
        last_activity = time.monotonic() + grace_s
        while timeout_s is None or time.monotonic() - last_activity < timeout_s:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaUnavailable(f"cannot read topic {topic!r}: {_describe(err)}")
                continue  # transient (broker restart, rebalance): librdkafka recovers by itself
            last_activity = time.monotonic()
            ts_type, ts = msg.timestamp()
            yield KafkaRecord(topic=msg.topic() or topic, partition=msg.partition() or 0, offset=msg.offset() or 0,
                              key=msg.key(), value=msg.value(), timestamp_ms=ts if ts_type else None)
    finally:
        consumer.close()  # with a group, this commits the offsets of everything yielded


def _all_partitions(consumer: Consumer, topic: str, offset: int) -> list[TopicPartition]:
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read the metadata of {topic!r}: {_describe(exc.args[0])}") from exc
    if info is None or info.error is not None or not info.partitions:
        raise KafkaUnavailable(f"cannot read topic {topic!r}: no such topic")
    return [TopicPartition(topic, p, offset) for p in sorted(info.partitions)]


class BatchConsumer:
    """A consumer-group member that reads records in batches and commits only when told to.

    Nothing is committed automatically (neither by librdkafka's auto-commit nor on close): the caller commits a
    partition's next offset synchronously once the records before it are safe elsewhere, so a process killed at
    any point re-reads, and never skips, what it had not finished. `on_assign`/`on_revoke` get (topic, partition)
    pairs; librdkafka calls them from inside `consume`, i.e. between two batches of the caller.
    """

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str], *, starting_position: str,
                 on_assign: Any = None, on_revoke: Any = None, config: Mapping[str, Any] | None = None) -> None:
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap, "logger": log, "group.id": group, **CONSUMER_GROUP_DEFAULTS,
            "enable.auto.commit": False, "enable.auto.offset.store": False, "enable.partition.eof": False,
            "auto.offset.reset": "earliest" if starting_position == "earliest" else "latest",
            "socket.connection.setup.timeout.ms": 5_000, **(config or {})}
        self._reset_earliest = starting_position == "earliest"
        try:
            self._consumer = Consumer(settings)
        except (KafkaException, ValueError, TypeError) as exc:
            raise KafkaUnavailable(f"cannot create a Kafka consumer: {exc}") from exc
        self._assigned: set[tuple[str, int]] = set()

        def assigned(_c: Consumer, partitions: list[TopicPartition]) -> None:
            pairs = [(tp.topic, tp.partition) for tp in partitions]
            self._assigned.update(pairs)
            if on_assign is not None:
                on_assign(pairs)

        def revoked(_c: Consumer, partitions: list[TopicPartition]) -> None:
            pairs = [(tp.topic, tp.partition) for tp in partitions]
            self._assigned.difference_update(pairs)
            if on_revoke is not None:
                on_revoke(pairs)

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    @property
    def assignment(self) -> set[tuple[str, int]]:
        return set(self._assigned)

    def consume(self, max_records: int, timeout_s: float) -> list[KafkaRecord]:
        """Up to `max_records` records, waiting at most `timeout_s` for them (0: only what is already fetched).

        Transient errors (rebalances, a broker restarting, a topic not created yet) are logged and skipped; a
        fatal one raises KafkaUnavailable.
        """
        records: list[KafkaRecord] = []
        for msg in self._consumer.consume(num_messages=max_records, timeout=timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaUnavailable(f"the consumer failed: {_describe(err)}")
                log.warning("kafka consumer: %s", _describe(err))
                continue
            ts_type, ts = msg.timestamp()
            records.append(KafkaRecord(topic=msg.topic() or "", partition=msg.partition() or 0,
                                       offset=msg.offset() or 0, key=msg.key(), value=msg.value(),
                                       timestamp_ms=ts if ts_type else None))
        return records

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit each partition's next offset to read, synchronously; raises KafkaUnavailable when refused."""
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot commit offsets: {_describe(exc.args[0])}") from exc

    def lag(self, timeout_s: float = 5.0) -> dict[tuple[str, int], dict[str, int]]:
        """Committed offset, high watermark and their difference for each assigned partition."""
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not partitions:
            return {}
        result: dict[tuple[str, int], dict[str, int]] = {}
        try:
            committed = self._consumer.committed(partitions, timeout=timeout_s)
            # A broker whose ListOffsets answer is behind (Tansu's in-memory engine answers 1) must not make the
            # lag look negative: what this consumer has already read is a lower bound of the high watermark.
            read = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(partitions)}
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                                 timeout=timeout_s)
                high = max(high, read.get((tp.topic, tp.partition), -1), tp.offset)
                position = tp.offset if tp.offset >= 0 else (low if self._reset_earliest else high)
                result[(tp.topic, tp.partition)] = {"committed": position, "high": high,
                                                    "lag": max(0, high - position)}
        except KafkaException as exc:
            log.warning("cannot read the lag: %s", _describe(exc.args[0]))
        return result

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once); commits nothing."""
        self._consumer.close()
