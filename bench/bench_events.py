"""Event sources on Postgres + RabbitMQ: trigger → Running latency (p50/p99) for timer ticks and storage events, and
queue-trigger throughput (messages/s into the ledger) beside a bare kombu consume loop over the same broker in the
same run. Nothing is asserted. `make bench-events` (BENCH_ARGS=--quick for a short run).

- timer: a `taskservice scheduler` process fires an `@every 1s` trigger; latency = Running (started_at) − the tick's
  scheduled time (its triggerTime), so it includes the scheduler's wake-up, submission, doorbell and claim.
- storage: MinIO-format notifications are posted to `POST /v1/storage-events` on a live `taskservice api`
  (gunicorn, one at a time, 10/s); latency = Running − the moment the POST was sent.
- queue: N messages are published to a queue first, then one `QueueConsumer` (batch 100) moves them into the
  ledger: messages/s = N ÷ (time the last batch's rows are in the ledger − time the first is). The bare loop consumes
  the same number of messages from another queue with kombu (prefetch 100, ack each) and does nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests
from kombu import Connection, Consumer, Producer
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fresh_run import AMQP, fresh_run  # noqa: E402
from bench.machine import background_load, describe_machine  # noqa: E402
from taskservice.destinations.queue import EXCHANGE, record_queue  # noqa: E402
from taskservice.ledger.models import INVOCATIONS, QUEUE_MESSAGES  # noqa: E402
from taskservice.queue_trigger import QueueConsumer  # noqa: E402
from taskservice.services import Services  # noqa: E402
from taskservice.specs import FunctionConfig  # noqa: E402
from taskservice.trigger_specs import QueueConfig, StorageConfig, TimerConfig  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "taskservice.cli", *args], cwd=REPO, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def started_at(services: Services, function: str, timeout_s: float, count: int) -> dict[str, datetime]:
    deadline = time.monotonic() + timeout_s
    while True:
        with services.engine.connect() as conn:
            rows = conn.execute(select(INVOCATIONS.c.invocation_id, INVOCATIONS.c.started_at, INVOCATIONS.c.payload)
                                .where(INVOCATIONS.c.function == function,
                                       INVOCATIONS.c.started_at.is_not(None))).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return {r.invocation_id: (r.started_at, r.payload) for r in rows}  # type: ignore[misc]
        time.sleep(0.2)


def timer_phase(services: Services, env: dict[str, str], logs: Path, ticks: int) -> str:
    services.triggers.put("bench-timer", TimerConfig(kind="timer", function="noop-timer", cron="@every 1s"))
    scheduler = start(["scheduler", "--loglevel", "WARNING"], env, logs / "scheduler.log")
    try:
        rows = started_at(services, "noop-timer", ticks + 30, ticks)
    finally:
        stop(scheduler)
        services.triggers.delete("bench-timer")
    latencies = []
    for started, payload in rows.values():  # type: ignore[misc]
        tick = datetime.fromisoformat(json.loads(payload)["triggerTime"].replace("Z", "+00:00"))
        latencies.append((started - tick).total_seconds() * 1000)
    return (f"timer   tick → Running: p50 {pct(latencies, 0.5):.0f} ms, p99 {pct(latencies, 0.99):.0f} ms "
            f"({len(latencies)} ticks of @every 1s)")


def storage_phase(services: Services, base: str, token: str, events: int) -> str:
    services.triggers.put("bench-storage", StorageConfig(kind="storage", function="noop-storage", bucket="media",
                                                         events=["s3:ObjectCreated:*"]))
    sent: dict[str, float] = {}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    for n in range(events):
        note = {"EventName": "s3:ObjectCreated:Put", "Key": f"media/in/{n}.mov", "Records": [{
            "eventName": "s3:ObjectCreated:Put", "eventTime": datetime.now(timezone.utc).isoformat(),
            "s3": {"bucket": {"name": "media"}, "object": {"key": f"in/{n}.mov", "size": 1, "eTag": f"e{n}"}}}]}
        at = time.time()
        answer = session.post(f"{base}/v1/storage-events", json=note, timeout=10).json()
        sent[answer["submitted"][0]["invocationId"]] = at
        time.sleep(max(0.0, at + 0.1 - time.time()))
    rows = started_at(services, "noop-storage", 60, events)
    latencies = [(rows[i][0].timestamp() - at) * 1000 for i, at in sent.items() if i in rows]  # type: ignore[index]
    services.triggers.delete("bench-storage")
    return (f"storage notification POST → Running: p50 {pct(latencies, 0.5):.0f} ms, p99 {pct(latencies, 0.99):.0f} "
            f"ms ({len(latencies)} events at 10/s through taskservice api)")


def publish(queue: str, n: int) -> None:
    with Connection(AMQP) as conn:
        producer = Producer(conn.default_channel, exchange=EXCHANGE)
        record_queue(queue)(producer.channel).declare()
        for i in range(n):
            producer.publish(f'{{"seq": {i}, "pad": "{"x" * 80}"}}'.encode(), routing_key=queue, delivery_mode=2,
                             message_id=f"m{i}", content_type="application/json", content_encoding="binary")


def bare_kombu(queue: str, n: int) -> float:
    seen = 0
    first: float | None = None

    def on_message(message: object) -> None:
        nonlocal seen, first
        if first is None:
            first = time.monotonic()
        seen += 1
        message.ack()  # type: ignore[attr-defined]

    with Connection(AMQP) as conn:
        with Consumer(conn.channel(), queues=[record_queue(queue)], on_message=on_message, prefetch_count=100):
            while seen < n:
                conn.drain_events(timeout=10)
    return n / (time.monotonic() - (first or time.monotonic()))


def queue_phase(services: Services, n: int) -> str:
    bare_queue, trigger_queue = f"bench-bare-{uuid.uuid4().hex[:6]}", f"bench-trig-{uuid.uuid4().hex[:6]}"
    publish(bare_queue, n)
    bare = bare_kombu(bare_queue, n)
    publish(trigger_queue, n)
    trigger, _ = services.triggers.put("bench-queue", QueueConfig(kind="queue", function="noop-queue",
                                                                   queue=trigger_queue, batch_size=100,
                                                                   batching_window_s=0.2))
    consumer = QueueConsumer(trigger, services)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    count = select(func.count()).select_from(QUEUE_MESSAGES).where(QUEUE_MESSAGES.c.trigger == "bench-queue")
    first: float | None = None
    while True:
        with services.engine.connect() as conn:
            done = int(conn.execute(count).scalar_one())
        if done and first is None:
            first = time.monotonic()
        if done >= n:
            break
        time.sleep(0.01)
    rate = n / (time.monotonic() - (first or time.monotonic()))
    consumer.stop.set()
    thread.join()
    with Connection(AMQP) as conn:
        for q in (bare_queue, trigger_queue):
            conn.default_channel.queue_delete(q)
    return (f"queue   {n} messages → {consumer.submitted} invocations (batch 100): {rate:,.0f} messages/s into the "
            f"ledger; bare kombu consume loop (prefetch 100, ack each): {bare:,.0f} messages/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    ticks, events, messages = (10, 30, 5_000) if args.quick else (60, 200, 20_000)
    print("machine:", describe_machine(), f"background load {background_load():.2f} cores", flush=True)
    with fresh_run("events") as run:
        services = run.services
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for name in ("noop-timer", "noop-storage", "noop-queue"):
                services.ledger.put_function(name, FunctionConfig(handler="workers.handlers.noop:handler"))
            _, token = services.tokens.create("bench", "admin")
            procs.append(start(["worker", "-c", "2", "--quiet", "--loglevel", "WARNING"], run.env,
                               run.logs / "worker.log"))
            port = 18000 + os.getpid() % 1000
            procs.append(start(["api", "--port", str(port), "--workers", "2"], run.env, run.logs / "api.log"))
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            time.sleep(2)  # the worker's startup, so the first figures are not its boot
            print(timer_phase(services, run.env, run.logs, ticks), flush=True)
            print(storage_phase(services, base, token, events), flush=True)
            print(queue_phase(services, messages), flush=True)
        finally:
            for proc in procs:
                stop(proc)


if __name__ == "__main__":
    main()
