"""queue:<name> — durable messages on the configured broker through kombu, with publisher confirms on RabbitMQ,
awaited once per batch.

Records are published to the direct exchange `taskservice.records` with the queue name as routing key and the queue
bound to it, so `taskservice destinations tail` can bind a temporary queue of its own and watch without taking
records away from the real consumer.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue

from taskservice.confirms import ConfirmingConnection
from taskservice.destinations.base import DeliveryError

EXCHANGE = Exchange("taskservice.records", type="direct", durable=True)


def record_queue(name: str) -> Queue:
    return Queue(name, EXCHANGE, routing_key=name, durable=True)


class QueueDestination:
    """Publishes a batch of records back to back and waits once for the broker's confirms of all of them
    (taskservice.confirms): a record counts as delivered only once RabbitMQ confirmed it, and one it refused or did
    not confirm is reported failed, so the outbox sends it again (at least once; consumers de-duplicate on the
    message id, the record's requestId)."""

    def __init__(self, uri: str, name: str, *, url: str, transport_options: dict[str, Any]) -> None:
        self.uri = uri
        self.name = name
        self.url = url
        self.transport_options = transport_options
        self._connection: ConfirmingConnection | None = None
        self._producer: Producer | None = None

    def _ready(self) -> tuple[ConfirmingConnection, Producer]:
        if self._connection is None or self._producer is None:
            self._connection = ConfirmingConnection(self.url, self.transport_options)
            self._producer = Producer(self._connection.channel, exchange=EXCHANGE, serializer="json")
            record_queue(self.name)(self._producer.channel).declare()
        return self._connection, self._producer

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        tags: list[int] = []
        try:
            connection, producer = self._ready()
            for record in records:
                producer.publish(record, routing_key=self.name, delivery_mode=2, serializer="json",
                                 message_id=record["requestContext"]["requestId"], retry=False)
                tags.append(connection.sent())
            unconfirmed = connection.settle(tags)
        except Exception as exc:  # kombu and amqp raise a zoo of transport errors; all mean "try again later"
            self.close()
            error = DeliveryError(f"broker refused the record for queue {self.name!r}: {type(exc).__name__}: {exc}")
            return [error] * len(records)
        if not unconfirmed:
            return [None] * len(records)
        self.close()
        refused = DeliveryError(f"the broker did not confirm the record for queue {self.name!r}")
        return [refused if tag in unconfirmed else None for tag in tags]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._producer = None


def tail_queue(name: str, *, url: str, transport_options: dict[str, Any], timeout_s: float | None
               ) -> Iterator[dict[str, Any]]:
    """Yield records arriving for queue `name`. On AMQP a temporary exclusive queue bound to the same routing key
    sees copies; on the embedded transport (no shared bindings between processes) the queue itself is read."""
    with Connection(url, transport_options=transport_options, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.default_channel
        if url.startswith(("amqp", "pyamqp")):
            watch = Queue("", EXCHANGE, routing_key=name, exclusive=True, auto_delete=True, durable=False)
        else:
            watch = record_queue(name)
        received: list[dict[str, Any]] = []

        def on_message(body: Any, message: Any) -> None:
            received.append(body)
            message.ack()

        with Consumer(channel, queues=[watch], callbacks=[on_message], accept=["json"]):
            while True:
                try:
                    conn.drain_events(timeout=timeout_s if timeout_s is not None else 1.0)
                except TimeoutError:
                    if timeout_s is not None:
                        return
                while received:
                    yield received.pop(0)


def drain_queue(name: str, *, url: str, transport_options: dict[str, Any], idle_s: float, batch: int = 100
                ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    """Take records off queue `name` itself (not a copy, unlike `tail_queue`), in batches of up to `batch`.

    Yields (records, ack): call `ack()` once they are safe elsewhere; records not acknowledged go back to the queue
    when the connection closes. Ends after `idle_s` seconds without a record.
    """
    with Connection(url, transport_options=transport_options, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        queue = conn.SimpleQueue(record_queue(name), serializer="json")
        try:
            while True:
                messages = []
                with contextlib.suppress(queue.Empty):
                    messages.append(queue.get(block=True, timeout=idle_s))
                    while len(messages) < batch:
                        messages.append(queue.get(block=True, timeout=0.2))
                if not messages:
                    return

                def ack(taken: list[Any] = messages) -> None:
                    for message in taken:
                        message.ack()

                yield [m.payload for m in messages], ack
        finally:
            queue.close()
