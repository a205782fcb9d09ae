"""Queue triggers (`taskservice consume`): messages of a broker queue become batch invocations, acknowledged only
once the ledger holds them, each message in exactly one invocation even when the consumer is killed.

Per batch (up to `batch_size` messages, or what arrived within `batching_window_s` of the first): the messages the
ledger already holds — recorded by message id in `queue_messages`, in the same transaction as their invocation —
are acknowledged at once (a redelivery after a crash, counted in the trigger's `duplicates`); the rest are cut
into invocations under the payload limit and submitted through `Submitter.submit`, their message ids written with
them; a message that can never be submitted (not UTF-8, or too large alone) becomes a dead letter; then all are
acknowledged. A consumer killed anywhere in between leaves its unacknowledged messages to the broker, which
redelivers them; the message-id rows make the second pass a no-op for those already in the ledger, however the
broker regroups them.

A message's id is its AMQP `message_id` property (kombu and Celery publishers set one; so does the `queue:`
destination: the record's requestId). A message without one gets a random id: it is still invoked, but a crash
between insert and acknowledgement may invoke it a second time (at least once).

The queue is the one a `queue:<name>` destination writes (exchange `taskservice.records`, routing key = name), so a
function's destination records can trigger another function. On RabbitMQ unacknowledged messages survive a killed
consumer; the embedded filesystem transport takes a message off disk when it is read, so there a SIGKILLed
consumer loses the batch it held (use RabbitMQ where that matters).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Consumer, Message
from sqlalchemy import Connection as DbConnection
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from taskservice.broker import broker_options
from taskservice.destinations.queue import record_queue
from taskservice.errors import DuplicateInvocation, FunctionNotFound
from taskservice.ledger.models import QUEUE_MESSAGES
from taskservice.ledger.triggers import Trigger
from taskservice.services import Services
from taskservice.submission import EncodedPayload
from taskservice.trigger_specs import QueueConfig
from taskservice.trigger_threads import TriggerThreads

log = logging.getLogger(__name__)
ERROR_BACKOFF_S = 2.0
BACKLOG_REPORT_S = 5.0


@dataclass(frozen=True)
class Received:
    message_id: str
    text: str | None  # the body as UTF-8 text; None when it is not
    raw: bytes
    entry: str  # its JSON text in the batch payload ("" when text is None)
    message: Any  # the kombu message, to acknowledge


def _entry(message_id: str, text: str, message: Message) -> str:
    info = message.delivery_info or {}
    return json.dumps({"messageId": message_id, "body": text, "contentType": message.content_type,
                       "headers": message.headers or {}, "routingKey": info.get("routing_key"),
                       "redelivered": bool(info.get("redelivered", False)),
                       "timestamp": (message.properties or {}).get("timestamp")},
                      separators=(",", ":"), ensure_ascii=False, default=str)


def received(message: Message) -> Received:
    properties = message.properties or {}
    message_id = str(properties.get("message_id") or (message.headers or {}).get("id") or f"anon-{uuid.uuid4()}")
    raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return Received(message_id[:255], text, raw, "" if text is None else _entry(message_id[:255], text, message),
                    message)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class QueueConsumer:
    """One queue trigger's loop; `run` returns when `stop` is set."""

    def __init__(self, trigger: Trigger, services: Services) -> None:
        spec = trigger.spec()
        assert isinstance(spec, QueueConfig)
        self.trigger = trigger
        self.spec = spec
        self.services = services
        self.stop = threading.Event()
        self.submitted = 0
        self._next_report = 0.0

    def run(self) -> None:
        url, options = broker_options(self.services.settings)
        while not self.stop.is_set():
            try:
                with Connection(url, transport_options=options, connect_timeout=5, heartbeat=30) as conn:
                    conn.ensure_connection(max_retries=3)
                    self._loop(conn)
            except Exception:
                log.exception("queue trigger %s: consumer failed; reconnecting", self.trigger.name)
                self.stop.wait(ERROR_BACKOFF_S)

    def _loop(self, conn: Connection) -> None:
        batch: list[Message] = []
        queue = record_queue(self.spec.queue)
        channel = conn.channel()
        with Consumer(channel, queues=[queue], on_message=batch.append,
                      prefetch_count=min(self.spec.batch_size, 65535)):
            while not self.stop.is_set():
                first_at: float | None = None
                while len(batch) < self.spec.batch_size and not self.stop.is_set():
                    wait = 0.5 if first_at is None else first_at + self.spec.batching_window_s - time.monotonic()
                    if first_at is not None and wait <= 0:
                        break
                    with contextlib.suppress(TimeoutError):  # nothing more arrived within the window: fine
                        conn.drain_events(timeout=max(0.01, min(wait, 0.5)))
                    if batch and first_at is None:
                        first_at = time.monotonic()
                if batch:
                    taken = batch[:]
                    batch.clear()
                    self.process([received(m) for m in taken])
                    for message in taken:
                        message.ack()
                self._report_backlog(channel)

    def _report_backlog(self, channel: Any) -> None:
        if time.monotonic() < self._next_report:
            return
        self._next_report = time.monotonic() + BACKLOG_REPORT_S
        try:
            backlog = int(channel.queue_declare(queue=self.spec.queue, passive=True).message_count)
        except Exception:  # not every transport can say; the status then shows "-"
            return
        self.services.triggers.bump_state(self.trigger.name, values={"backlog": backlog})

    # --- batch → ledger ---------------------------------------------------------------------------------------
    def process(self, messages: Sequence[Received]) -> None:
        """Write every message to the ledger (in an invocation, or as a dead letter); then the caller acks."""
        for _ in range(5):  # a concurrent consumer may record some of them between our read and our insert
            fresh = self._fresh(messages)
            try:
                self._write(fresh, duplicates=len(messages) - len(fresh))
                return
            except IntegrityError:
                log.info("queue trigger %s: some messages were recorded meanwhile; looking again", self.trigger.name)
        raise RuntimeError("could not record the batch after 5 tries")

    def _fresh(self, messages: Sequence[Received]) -> list[Received]:
        ids = [m.message_id for m in messages]
        with self.services.engine.connect() as conn:
            held = {r.message_id for r in conn.execute(select(QUEUE_MESSAGES.c.message_id).where(
                QUEUE_MESSAGES.c.trigger == self.trigger.name, QUEUE_MESSAGES.c.message_id.in_(ids)))}
        seen: set[str] = set()
        fresh = []
        for m in messages:
            if m.message_id not in held and m.message_id not in seen:
                seen.add(m.message_id)
                fresh.append(m)
        return fresh

    def _write(self, messages: list[Received], *, duplicates: int) -> None:
        limit = self.services.settings.max_payload_bytes
        chunk: list[Received] = []
        size = 2
        batches = rejected = 0
        for m in messages:
            if m.text is None or len(m.entry.encode()) + 2 > limit:
                self._reject(m, limit)
                rejected += 1
                continue
            length = len(m.entry.encode()) + 1
            if chunk and size + length > limit:
                batches += self._submit(chunk)
                chunk, size = [], 2
            chunk.append(m)
            size += length
        if chunk:
            batches += self._submit(chunk)
        if messages or duplicates:
            self.services.triggers.bump_state(
                self.trigger.name, add={"messages": len(messages) - rejected, "batches": batches,
                                        "deadLetters": rejected, "duplicates": duplicates},
                values={"lastBatchTime": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"})

    def _submit(self, chunk: list[Received]) -> int:
        ids = [m.message_id for m in chunk]
        invocation_id = f"queue_{self.trigger.name}_{_digest(ids[0], ids[-1], str(len(ids)))}"

        def record_ids(conn: DbConnection, pk: int) -> None:
            conn.execute(insert(QUEUE_MESSAGES), [{"trigger": self.trigger.name, "message_id": mid,
                                                   "invocation_pk": pk} for mid in ids])

        payload = EncodedPayload("[" + ",".join(m.entry for m in chunk) + "]")
        try:
            self.services.submitter.submit(self.spec.function, payload, invocation_id=invocation_id, also=record_ids)
        except DuplicateInvocation:
            return 0
        except FunctionNotFound:
            log.warning("queue trigger %s: function %s does not exist; %d message(s) left in the queue",
                        self.trigger.name, self.spec.function, len(chunk))
            raise
        self.submitted += 1
        return 1

    def _reject(self, m: Received, limit: int) -> None:
        if m.text is None:
            error_type, error = "InvalidRecord", "the message body is not UTF-8 text; bodies are passed as text"
        else:
            error_type = "PayloadTooLarge"
            error = f"the message alone is {len(m.entry.encode()) + 2} bytes as a batch; the limit is {limit} bytes"
        payload = json.dumps([{"messageId": m.message_id, "body": base64.b64encode(m.raw).decode(),
                               "encoding": "base64"}])
        log.warning("queue trigger %s: message %s is a dead letter: %s", self.trigger.name, m.message_id, error)
        self.services.dead_letters.reject(self.spec.function, f"queue_{self.trigger.name}_{_digest(m.message_id)}",
                                          payload, error_type=error_type, error=error)


class QueueConsumers(TriggerThreads[QueueConsumer]):
    """One QueueConsumer thread per enabled queue trigger, following the trigger table every `refresh_s`."""

    kind = "queue"
    started = "queue consumer started"

    def loop_for(self, trigger: Trigger) -> QueueConsumer:
        return QueueConsumer(trigger, self.services)

    def describe(self, loop: QueueConsumer) -> str:
        return f"consuming {loop.spec.queue} for function {loop.spec.function}"
