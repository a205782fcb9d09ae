"""The broker boundary: rings the doorbell for an invocation. Messages carry the ledger key only, never payloads.

Both the API (publisher) and the workers (consumer) build their Celery app here, so serializer, queue and transport
options cannot drift apart.
"""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.serialization import dumps as kombu_dumps

from taskservice.broker import broker_options
from taskservice.config import Settings
from taskservice.confirms import ConfirmingConnection
from taskservice.errors import DispatchError

RUN_TASK = "taskservice.run_invocation"
MAX_HELD_S = 600.0  # the longest a delayed doorbell is held by a worker (see Dispatcher.ring)


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for JSON-only doorbells on the configured broker (filesystem transport embedded)."""
    app = Celery("taskservice", set_as_current=False)
    url, transport_options = broker_options(settings)
    exchange = Exchange(settings.queue, type="direct", durable=True)
    app.conf.update(
        broker_url=url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_queues=[Queue(settings.queue, exchange, routing_key=settings.queue, durable=True)],
        task_default_queue=settings.queue,
        task_default_exchange=settings.queue,
        task_default_routing_key=settings.queue,
        # The ledger, not the broker, decides what runs: ack when a pool process takes the doorbell, hold as little as
        # possible unacknowledged, and let leases (not RabbitMQ's consumer_timeout) catch a worker that dies mid-task.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        # Stop is a ledger state (design §3.5), not a broadcast: no remote-control queue per worker.
        worker_enable_remote_control=False,
        broker_heartbeat=60,
    )
    return app


def broker_options_of(celery: Celery) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options a Celery app from make_celery was built with."""
    return celery.conf.broker_url, dict(celery.conf.broker_transport_options or {})


class Dispatcher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self.queue: str = celery.conf.task_default_queue
        self._inspector: Connection | None = None  # a connection of its own for queue depth, made on first use
        self._batcher: ConfirmingConnection | None = None  # doorbells: confirms awaited once per call
        self._batcher_pid = 0  # the process that opened it
        self._batch_lock = threading.Lock()

    def ring(self, pk: int, *, delay_s: float = 0.0) -> None:
        """Publish the doorbell for invocation `pk`; raises DispatchError when the broker cannot take it.

        A delayed doorbell is held, unacknowledged, by the worker that received it until it is due, and RabbitMQ
        closes a channel whose delivery stays unacknowledged past its consumer_timeout (30 min by default). So a
        longer delay is rung in hops of at most MAX_HELD_S: the ledger's not_before stays the truth, and a doorbell
        that comes early is deferred again to it."""
        countdown = min(delay_s, MAX_HELD_S)
        self._publish([pk], countdown=countdown if countdown > 0 else None)

    def ring_many(self, pks: Sequence[int]) -> None:
        """Publish the doorbells of `pks` back to back and wait once for the broker's confirms of all of them (bulk
        submission, Kafka ingest). Raises DispatchError when any was not confirmed: the caller then flags them all
        for the reaper, and a doorbell rung twice dies at the claim."""
        self._publish(pks, countdown=None)

    def _publish(self, pks: Sequence[int], *, countdown: float | None) -> None:
        """Celery's own task messages, published on a confirming connection of the dispatcher's own without
        send_task's per-call routing, queue declaration and signal dispatch (1.4 of its 2.8 ms per doorbell). A
        connection that fails is dropped and the batch tried once more on a new one (a broker restart, a link
        blip), as send_task's retry did; a doorbell that went out twice that way dies at the claim."""
        with self._batch_lock:
            for attempt in (1, 2):
                try:
                    unconfirmed = self._publish_on_batcher(pks, countdown)
                except Exception as exc:  # kombu surfaces transport failures as many unrelated types
                    self._drop_batcher()
                    if attempt == 2:
                        raise DispatchError(f"broker refused {_doorbells(pks)}: {exc}") from exc
                    continue
                if not unconfirmed:
                    return
                self._drop_batcher()
                if attempt == 2:
                    raise DispatchError(f"the broker did not confirm {len(unconfirmed)} of {_doorbells(pks)}")

    def _publish_on_batcher(self, pks: Sequence[int], countdown: float | None) -> Collection[int]:
        if self._batcher is not None and self._batcher_pid != os.getpid():
            # Inherited through a fork (a pool process the worker replaced): the socket is the parent's. Leave it
            # to the parent, unclosed: a close frame from here would end the parent's connection.
            self._batcher = None
        if self._batcher is None:
            url, options = broker_options_of(self.celery)
            self._batcher = ConfirmingConnection(url, options)
            self._batcher_pid = os.getpid()
            self.celery.amqp.queues[self.queue](self._batcher.channel).declare()
        batcher = self._batcher
        channel = batcher.channel
        tags = []
        for headers, properties, body in doorbell_messages(self.celery, pks, countdown=countdown):
            message = channel.prepare_message(body, None, DOORBELL_CONTENT_TYPE, "utf-8", headers, properties)
            channel.basic_publish(message, exchange="", routing_key=self.queue, mandatory=False, immediate=False)
            tags.append(batcher.sent())
        return batcher.settle(tags)

    def _drop_batcher(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None

    def queued(self) -> int | None:
        """How many doorbells wait in the queue, ready for a worker (not those a worker already holds); None when
        the broker cannot be asked right now."""
        try:
            if self._inspector is None:
                self._inspector = self.celery.connection_for_write()
                self._inspector.ensure_connection(max_retries=1)
            return int(self._inspector.default_channel.queue_declare(queue=self.queue, passive=True).message_count)
        except Exception:  # broker away, or the queue not declared yet: nobody can say, so the caller waits
            self.close()
            return None

    def unreachable_because(self) -> str | None:
        """None when the broker answers a fresh connection now; else the kind of error (for /healthz)."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
            return None
        except Exception as exc:  # kombu surfaces transport failures as many unrelated types
            return type(exc).__name__

    def close(self) -> None:
        with self._batch_lock:
            self._drop_batcher()
        if self._inspector is not None:
            with contextlib.suppress(Exception):  # best effort: the connection may already be gone
                self._inspector.release()
            self._inspector = None


DOORBELL_CONTENT_TYPE = "application/json"
_PLACEHOLDER_PK = 0


def doorbell_messages(celery: Celery, pks: Sequence[int], *, countdown: float | None = None,
                      task_ids: Sequence[str] | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any], bytes]]:
    """(headers, properties, JSON body) of Celery's own task message for each doorbell of `pks`, as
    `create_task_message` followed by kombu's JSON serializer would make them, with a fresh task id each (or
    `task_ids`).

    Celery's message builder (argument checks, saferepr, ETA arithmetic) and kombu's serializer cost more than the
    publish itself on bulk paths. Only four fields differ between the doorbells of one call — the task id (also
    root_id and correlation_id), the arguments and their repr — so the message is built once per call and those
    fields are set per doorbell. tests/unit/test_doorbell_messages.py holds this equal to Celery's own output."""
    headers, properties, body, _ = celery.amqp.create_task_message(
        "", RUN_TASK, (_PLACEHOLDER_PK,), {}, countdown=countdown)
    _, _, encoded = kombu_dumps(body, serializer="json")
    text = encoded.decode() if isinstance(encoded, bytes) else encoded
    head = f"[[{_PLACEHOLDER_PK}]"
    if not text.startswith(head):
        raise RuntimeError(f"Celery's task body changed shape ({text[:40]!r}): the doorbell template needs a look")
    body_tail = text[len(head):]
    properties = dict(properties, delivery_mode=2)
    for index, pk in enumerate(pks):
        task_id = task_ids[index] if task_ids is not None else str(uuid.uuid4())
        yield (dict(headers, id=task_id, root_id=task_id, argsrepr=f"({pk},)"),
               dict(properties, correlation_id=task_id),
               f"[[{int(pk)}]{body_tail}".encode())


def _doorbells(pks: Sequence[int]) -> str:
    return f"the doorbell for invocation {pks[0]}" if len(pks) == 1 else f"a batch of {len(pks)} doorbells"
