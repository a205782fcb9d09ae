"""The Kafka ETL scenario, end to end (`make etl-demo`).

Starts a Kafka-protocol broker (Tansu, from the test extra) unless TASKSERVICE_KAFKA_BOOTSTRAP names one, runs
`taskservice dev` on a scratch data dir with Kafka ingest, deploys workers.handlers.etl with
--on-success queue:fc-etl-processed-message --on-failure queue:dead-letter-queue, adds a trigger, produces orders,
shows processed batches arriving in the success queue, a poisoned batch landing in the dead-letter queue, and its
replay — with an edited payload from the store, then idempotently from the dead-letter queue itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from demo_dev import dev_spot, running_dev

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def cli(env: dict[str, str], *args: str, check: bool = True) -> str:
    print("$ taskservice " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "taskservice.cli", *args], env=env, cwd=REPO, text=True,
                         capture_output=True)
    print((out.stdout + out.stderr).rstrip(), flush=True)
    if check and out.returncode != 0:
        raise SystemExit(f"command failed with status {out.returncode}")
    return out.stdout


def main() -> None:
    from taskservice.kafka import KafkaPublisher, ensure_topic

    broker = None
    bootstrap = os.environ.get("TASKSERVICE_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        from tests.kafka_broker import KafkaBroker

        broker = KafkaBroker()
        broker.start()
        bootstrap = broker.bootstrap
    spot = dev_spot("etl-demo-", kafka_bootstrap=bootstrap)
    data_dir, base, env = spot.data_dir, spot.base, spot.env
    topic = "orders"
    ensure_topic(bootstrap, topic, partitions=3)
    step(f"taskservice dev on {base} (data in {data_dir}, Kafka at {bootstrap})")
    try:
        with running_dev(spot):
            run(env, bootstrap, topic, KafkaPublisher)
    finally:
        if broker is not None:
            broker.stop()


def run(env: dict[str, str], bootstrap: str, topic: str, publisher_class: type) -> None:
    step("deploy the ETL function and its trigger")
    cli(env, "functions", "deploy", "etl", "--handler", "workers.handlers.etl:handler", "--max-retries", "0",
        "--on-success", "queue:fc-etl-processed-message", "--on-failure", "queue:dead-letter-queue")
    cli(env, "triggers", "put", "etl-orders", "--function", "etl", "--topic", topic, "--batch-size", "50",
        "--window", "0.5", "--starting-position", "earliest")
    step("produce 300 orders")
    publisher = publisher_class(bootstrap)
    good = [(f"c{i % 7}".encode(), json.dumps({"order": i, "amount": i / 10}).encode()) for i in range(300)]
    assert publisher.publish_batch(topic, good) == [None] * len(good)
    time.sleep(8)  # the consumer group join takes a few seconds, then batches are invoked and run
    step("processed batches arrive in queue:fc-etl-processed-message")
    out = cli(env, "destinations", "tail", "queue:fc-etl-processed-message", "--timeout", "3")
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    processed = sum(len(json.loads(r["responsePayload"])) for r in records)
    print(f"-> {len(records)} success record(s) holding {processed} processed order(s); first output: "
          f"{json.loads(records[0]['responsePayload'])[0] if records else None}")
    step("a poisoned batch fails and lands in the dead-letter queue (and the dead-letter store)")
    assert publisher.publish_batch(topic, [(b"c0", json.dumps({"order": 999, "poison": True}).encode())]) == [None]
    publisher.close()
    time.sleep(4)
    letters = json.loads(cli(env, "dlq", "list", "--function", "etl", "--json"))["items"]
    cli(env, "dlq", "list", "--function", "etl")
    if not letters:
        raise SystemExit("no dead letter arrived")
    dead = letters[0]
    payload = [dict(r, value=json.dumps({"order": 999, "amount": 1})) for r in json.loads(
        dead["record"]["requestPayload"])]
    step("replay it from the store with an edited payload (poison removed)")
    cli(env, "dlq", "replay", str(dead["id"]), "--payload", json.dumps(payload))
    time.sleep(3)
    cli(env, "tasks", "list", "--function", "etl", "--prefix", "replay_")
    step("replay from the dead-letter queue itself: the same failure again is a duplicate, not a second run")
    cli(env, "dlq", "replay", "--from", "queue:dead-letter-queue", "--timeout", "2")
    cli(env, "destinations", "tail", "queue:fc-etl-processed-message", "--timeout", "2")
    step("trigger lag")
    cli(env, "triggers", "show", "etl-orders")


if __name__ == "__main__":
    main()
