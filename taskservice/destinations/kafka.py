"""kafka:<topic> — records produced by an idempotent producer, keyed by requestId (so one request's records keep
their order within a partition and consumers can de-duplicate)."""
from __future__ import annotations

import json
from typing import Any

from taskservice.destinations.base import DeliveryError
from taskservice.errors import TaskServiceError
from taskservice.kafka import KafkaPublisher


class KafkaDestination:
    def __init__(self, uri: str, topic: str, publisher: KafkaPublisher) -> None:
        self.uri = uri
        self.topic = topic
        self.publisher = publisher

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        messages = [(r["requestContext"]["requestId"].encode(),
                     json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()) for r in records]
        try:
            errors = self.publisher.publish_batch(self.topic, messages)
        except TaskServiceError as exc:
            return [DeliveryError(f"Kafka unavailable for topic {self.topic!r}: {exc.message}")] * len(records)
        return [None if e is None else DeliveryError(f"Kafka refused the record for {self.topic!r}: {e}")
                for e in errors]

    def close(self) -> None:
        return None  # the publisher is shared by every kafka: destination and closed by Destinations
