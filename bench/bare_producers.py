"""The plain alternatives to the relay: a bare kombu publish loop and a bare confluent-kafka produce loop.

They send the very record bodies the relay sent, to the same broker, with the same delivery guarantees the relay
asks for (kombu: durable queue, persistent messages, publisher confirms; Kafka: the relay's own idempotent producer
settings, keyed by requestId), so the gap between them and the relay is what the relay itself costs: claiming and
marking rows in the ledger, and batching. Connections are opened and warmed up outside the timed window.
"""
from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer
from kombu import Connection
from kombu import Producer as KombuProducer

from bench import machine
from bench.broker import BrokerAdmin
from taskservice.destinations.queue import EXCHANGE, record_queue
from taskservice.kafka import PRODUCER_DEFAULTS, KafkaPublisher

log = logging.getLogger("bench.kafka")


@dataclass(frozen=True)
class LoopRun:
    n: int
    seconds: float  # first send → last acknowledgement (or last send returned, without confirms)
    acknowledged: int
    cpu: machine.CpuBreakdown
    settled_s: float | None = None  # without confirms: first send → the broker holding all n
    rounds: str = ""  # when the figure is the median of several rounds: their spread

    @property
    def rate(self) -> float | None:
        return self.n / self.seconds if self.acknowledged >= self.n and self.seconds > 0 else None

    def describe(self) -> str:
        missing = "" if self.acknowledged >= self.n else f" INCOMPLETE: {self.acknowledged}/{self.n} acknowledged;"
        settled = ("" if self.settled_s is None
                   else f"; RabbitMQ held all {self.n} after {self.settled_s:.2f} s ({self.n / self.settled_s:,.0f}/s)")
        timing = (f"median round {self.seconds * 1000:.1f} ms ({self.rounds})" if self.rounds
                  else f"{self.seconds:.2f} s")
        return f"N={self.n};{missing} {timing}{settled}; CPU {self.cpu.describe()}"


def kombu_publish(amqp_url: str, queue: str, records: list[dict[str, Any]], *, confirms: bool,
                  sessions: Mapping[int, str]) -> LoopRun:
    """Publish every record as the queue: destination does (same exchange, routing, message id, delivery mode),
    from one connection, one call per record."""
    options = {"confirm_publish": True} if confirms else {}
    with Connection(amqp_url, transport_options=options, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        producer = KombuProducer(conn.default_channel, exchange=EXCHANGE, serializer="json")
        record_queue(queue)(producer.channel).declare()
        _publish(producer, queue, records[0])  # warm-up: the first publish turns confirms on for the channel
        producer.channel.queue_purge(queue)
        before = machine.snapshot(sessions)
        started = time.perf_counter()
        for record in records:
            _publish(producer, queue, record)
        seconds = time.perf_counter() - started
        settled_s = None if confirms else _wait_for_depth(amqp_url, queue, len(records), started)
        cpu = machine.breakdown(before, machine.snapshot(sessions))
    held = BrokerAdmin(amqp_url).depth(queue)
    return LoopRun(len(records), seconds, held, cpu, settled_s)


def kombu_publish_batch_confirms(amqp_url: str, queue: str, records: list[dict[str, Any]], *, batch: int,
                                 sessions: Mapping[int, str]) -> LoopRun:
    """The same publishes with the same guarantee (every record confirmed by RabbitMQ before it counts), but the
    confirms of a whole batch are awaited together instead of one per publish, as kombu's confirm_publish does.
    Shows what the relay could reach with confirms awaited per batch."""
    acked = {"tag": 0, "nacks": 0}

    def on_ack(delivery_tag: int, multiple: bool) -> None:
        acked["tag"] = max(acked["tag"], delivery_tag)

    def on_nack(delivery_tag: int, multiple: bool) -> None:  # refused: the run is reported incomplete
        acked["nacks"] += 1
        on_ack(delivery_tag, multiple)

    with Connection(amqp_url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.default_channel
        channel.confirm_select()  # confirms on, but publish() no longer waits for each one
        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
        producer = KombuProducer(channel, exchange=EXCHANGE, serializer="json")
        record_queue(queue)(channel).declare()
        before = machine.snapshot(sessions)
        started = time.perf_counter()
        for first in range(0, len(records), batch):
            for record in records[first:first + batch]:
                _publish(producer, queue, record)
            while acked["tag"] < min(first + batch, len(records)):  # delivery tags count publishes from 1
                conn.drain_events(timeout=10)
        seconds = time.perf_counter() - started
        cpu = machine.breakdown(before, machine.snapshot(sessions))
    held = BrokerAdmin(amqp_url).depth(queue) if acked["nacks"] == 0 else 0
    return LoopRun(len(records), seconds, held, cpu)


def _publish(producer: KombuProducer, queue: str, record: dict[str, Any]) -> None:
    producer.publish(record, routing_key=queue, delivery_mode=2, serializer="json",
                     message_id=record["requestContext"]["requestId"], retry=False)


def _wait_for_depth(amqp_url: str, queue: str, n: int, started: float, timeout_s: float = 30.0) -> float | None:
    """Without confirms a publish returns once the frame is written: the broker's work is only visible in the
    queue's depth."""
    admin = BrokerAdmin(amqp_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if admin.depth(queue) >= n:
            return time.perf_counter() - started
        time.sleep(0.01)
    return None


def kafka_produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], *, rounds: int,
                  sessions: Mapping[int, str]) -> LoopRun:
    """Produce every (key, value) with the relay's producer settings (idempotent, acks=all), then flush; `rounds`
    times, because one round of a few thousand takes only milliseconds. The figure is the median round."""
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, "logger": log})
    outcome = {"acked": 0, "failed": 0}

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        outcome["acked" if err is None else "failed"] += 1

    producer.produce(topic, value=messages[0][1], key=messages[0][0])  # warm-up: metadata, producer id
    if producer.flush(15) != 0:
        raise RuntimeError(f"the bare Kafka producer could not deliver its warm-up record to {topic}")
    before = machine.snapshot(sessions)
    durations = []
    for _ in range(rounds):
        started = time.perf_counter()
        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: serve delivery reports to make room
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(60)
        durations.append(time.perf_counter() - started)
    cpu = machine.breakdown(before, machine.snapshot(sessions))
    return LoopRun(len(messages), statistics.median(durations), outcome["acked"] // rounds, cpu,
                   rounds=_spread(len(messages), durations))


def publisher_batches(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], *, batch: int,
                      sessions: Mapping[int, str]) -> LoopRun:
    """The relay's own publish path without the ledger: `KafkaPublisher.publish_batch` called with relay-sized
    batches, each waited for before the next, as the relay does. Shows what the batch-at-a-time wait costs."""
    publisher = KafkaPublisher(bootstrap)
    try:
        publisher.publish_batch(topic, messages[:1])  # warm-up: metadata, producer id
        before = machine.snapshot(sessions)
        started = time.perf_counter()
        delivered = 0
        for first in range(0, len(messages), batch):
            delivered += publisher.publish_batch(topic, messages[first:first + batch]).count(None)
        seconds = time.perf_counter() - started
        cpu = machine.breakdown(before, machine.snapshot(sessions))
    finally:
        publisher.close()
    return LoopRun(len(messages), seconds, delivered, cpu)


def _spread(n: int, durations: list[float]) -> str:
    rates = sorted(n / d for d in durations)
    return f"{len(durations)} rounds of {n}, {rates[0]:,.0f}–{rates[-1]:,.0f}/s"
