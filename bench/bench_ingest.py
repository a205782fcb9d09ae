"""Kafka ingest throughput: records/s from a topic into the ledger, at batch size 100 and 1, beside a bare
confluent-kafka consume loop over the same topic in the same run. Postgres + RabbitMQ + a Tansu broker; nothing is
asserted. `make bench-ingest` (BENCH_ARGS=--quick for fewer records)."""
from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402 - bench-only baseline

from taskservice import migrate  # noqa: E402
from taskservice.config import Settings  # noqa: E402
from taskservice.db import make_engine  # noqa: E402
from taskservice.ingest.kafka import TriggerConsumer  # noqa: E402
from taskservice.kafka import KafkaPublisher, ensure_topic  # noqa: E402
from taskservice.ledger.triggers import Trigger  # noqa: E402
from taskservice.services import Services  # noqa: E402
from taskservice.specs import FunctionConfig  # noqa: E402
from tests.kafka_broker import KafkaBroker  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def bare_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    seen, started = 0, None
    while seen < n:
        batch = consumer.consume(1000, 1.0)
        if batch and started is None:
            started = time.monotonic()
        seen += sum(1 for m in batch if m.error() is None)
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    return n / elapsed


def ingest(services: Services, bootstrap: str, topic: str, n: int, batch: int) -> tuple[float, int]:
    now = datetime.now(timezone.utc)
    trigger = Trigger(name=f"b{batch}", function="noop", topics=[topic], consumer_group=f"bench-{uuid.uuid4().hex}",
                      batch_size=batch, batching_window_s=0.0, starting_position="earliest", enabled=True,
                      description="", lag={}, created_at=now, updated_at=now)
    consumer = TriggerConsumer(trigger, services, bootstrap, lag_report_s=3600)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    while not consumer._next:  # noqa: SLF001 - the group join (seconds) is not ingest throughput
        time.sleep(0.005)
    started = time.monotonic()
    while sum(consumer._next.values()) < n:  # noqa: SLF001
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    consumer.stop.set()
    thread.join()
    return n / elapsed, consumer.submitted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n100, n1 = (20_000, 2_000) if args.quick else (100_000, 10_000)
    broker = KafkaBroker()
    broker.start()
    db = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = make_engine(f"{PG}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    services = Services.build(Settings(database_url=f"{PG}/{db}", broker_url="amqp://guest:guest@127.0.0.1:5672//",
                                       queue=f"bench.{db}"))
    try:
        migrate.upgrade(services.engine)
        services.ledger.put_function("noop", FunctionConfig(handler="workers.handlers.noop:handler"))
        for n, batch in ((n100, 100), (n1, 1)):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            ensure_topic(broker.bootstrap, topic, partitions=3)
            publisher = KafkaPublisher(broker.bootstrap)
            messages = [(f"k{i % 101}".encode(), f'{{"seq": {i}, "pad": "{"x" * 80}"}}'.encode()) for i in range(n)]
            for i in range(0, n, 10_000):
                publisher.publish_batch(topic, messages[i:i + 10_000])
            publisher.close()
            bare = bare_consume(broker.bootstrap, topic, n)
            rate, invocations = ingest(services, broker.bootstrap, topic, n, batch)
            print(f"batch {batch:>3}: {n} records → {invocations} invocations: {rate:,.0f} records/s "
                  f"({rate * invocations / n:,.0f} invocations/s); bare confluent-kafka consume loop: {bare:,.0f} "
                  "records/s", flush=True)
    finally:
        services.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        broker.stop()
        from kombu import Connection

        with Connection("amqp://guest:guest@127.0.0.1:5672//") as amqp:  # the doorbells of this run
            amqp.default_channel.queue_delete(f"bench.{db}")


if __name__ == "__main__":
    main()
