"""queue:<name> — durable messages on the configured broker through kombu, with publisher confirms on RabbitMQ.

Records are published to the direct exchange `taskservice.records` with the queue name as routing key and the queue
bound to it, so `taskservice destinations tail` can bind a temporary queue of its own and watch without taking
records away from the real consumer.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue

from taskservice.destinations.base import DeliveryError

EXCHANGE = Exchange("taskservice.records", type="direct", durable=True)


def record_queue(name: str) -> Queue:
    return Queue(name, EXCHANGE, routing_key=name, durable=True)


class QueueDestination:
    def __init__(self, uri: str, name: str, *, url: str, transport_options: dict[str, Any]) -> None:
        self.uri = uri
        self.name = name
        self.url = url
        self.transport_options = transport_options
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def _ready_producer(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(self.url, transport_options=self.transport_options, connect_timeout=5)
            self._connection.ensure_connection(max_retries=1)
            self._producer = Producer(self._connection.default_channel, exchange=EXCHANGE, serializer="json")
            record_queue(self.name)(self._producer.channel).declare()
        return self._producer

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        results: list[DeliveryError | None] = []
        try:
            producer = self._ready_producer()
            for record in records:
                producer.publish(record, routing_key=self.name, delivery_mode=2, serializer="json",
                                 message_id=record["requestContext"]["requestId"], retry=False)
                results.append(None)
        except Exception as exc:  # kombu and amqp raise a zoo of transport errors; all mean "try again later"
            self.close()
            error = DeliveryError(f"broker refused the record for queue {self.name!r}: {type(exc).__name__}: {exc}")
            results.extend([error] * (len(records) - len(results)))
        return results

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may raise again; it is gone either way
                self._connection.release()
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
