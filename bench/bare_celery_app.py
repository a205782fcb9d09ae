"""The plain alternative: a bare Celery app with a no-op task, Celery defaults except JSON and the queue name.

Run as `celery -A bench.bare_celery_app worker -c 2 --pool prefork -Q <queue>`: `celery -A` imports this module and
takes its `app`, so the worker's settings come from BENCH_* variables read at import (this is a bench fixture, not
service code). The publisher side calls `make_app()` directly.

Completion signal: the task does one Redis pipeline (INCR a counter, SET the time of the latest completion), about
0.1 ms, so the bench can count completions and take the last completion time exactly as it takes `finished_at` from
the ledger for taskservice.
"""
from __future__ import annotations

import os
import time

import redis
from celery import Celery

NOOP_TASK = "bench.bare_noop"
HANG_TASK = "bench.bare_hang"

_redis: redis.Redis | None = None


def make_app(broker_url: str, queue: str, *, confirm_publish: bool = False) -> Celery:
    """A bare Celery app. `confirm_publish=True` gives the publisher the same broker round trip per message that
    taskservice's dispatcher pays, for an apples-to-apples publish figure."""
    app = Celery("bare", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_backend=None, task_ignore_result=True,
                    task_default_queue=queue, worker_hijack_root_logger=False,
                    broker_transport_options={"confirm_publish": True} if confirm_publish else {})
    app.task(name=NOOP_TASK, ignore_result=True)(_noop)
    app.task(name=HANG_TASK, ignore_result=True)(_hang)
    return app


def _hang(pid_file: str) -> None:
    """The stop benchmark's task: a child process, then wait to be revoked (see bench/stop_handlers.py)."""
    from bench.stop_handlers import hang_with_child

    hang_with_child(pid_file)


def _noop() -> None:
    """No work, then the completion signal (see the module docstring)."""
    global _redis
    if _redis is None:  # created lazily in each pool process, after the fork
        _redis = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    key = os.environ.get("BENCH_REDIS_KEY", "bench:bare")
    pipe = _redis.pipeline(transaction=False)
    pipe.incr(f"{key}:done")
    pipe.set(f"{key}:last", repr(time.time()))
    pipe.execute()


def read_completion(client: redis.Redis, key: str) -> tuple[int, float | None]:
    """(completed count, epoch seconds of the latest completion)."""
    values: list[bytes | None] = client.mget(f"{key}:done", f"{key}:last")  # type: ignore[assignment]
    done, last = values
    return int(done or 0), None if last is None else float(last)


def reset_completion(client: redis.Redis, key: str) -> None:
    client.delete(f"{key}:done", f"{key}:last")


app = make_app(os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
               os.environ.get("BENCH_BARE_QUEUE", "bench.bare"))
