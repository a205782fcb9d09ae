"""Maps a destination URI to its client, built on first use and kept; the relay owns one of these."""
from __future__ import annotations

from typing import TYPE_CHECKING

from taskservice.broker import broker_options
from taskservice.config import Settings
from taskservice.destinations.base import DeliveryError, Destination, Submits
from taskservice.specs import is_webhook

if TYPE_CHECKING:
    from taskservice.kafka import KafkaPublisher


class Destinations:
    """Builds one client per destination URI on first use and keeps it; the relay owns one of these."""

    def __init__(self, settings: Settings, submitter: Submits) -> None:
        self.settings = settings
        self.submitter = submitter
        self._clients: dict[str, Destination] = {}
        self._kafka: KafkaPublisher | None = None

    def get(self, uri: str) -> Destination:
        client = self._clients.get(uri)
        if client is None:
            client = self._clients[uri] = self._build(uri)
        return client

    def _build(self, uri: str) -> Destination:
        if is_webhook(uri):
            from taskservice.destinations.netguard import AddressAllowList
            from taskservice.destinations.webhook import WebhookDestination

            return WebhookDestination(uri, allow=AddressAllowList.parse(self.settings.webhook_allow))
        scheme, _, target = uri.partition(":")
        if scheme == "queue":
            from taskservice.destinations.queue import QueueDestination

            url, options = broker_options(self.settings)
            return QueueDestination(uri, target, url=url, transport_options=options)
        if scheme == "function":
            from taskservice.destinations.function import FunctionDestination

            return FunctionDestination(uri, target, self.submitter)
        if scheme == "kafka":
            from taskservice.destinations.kafka import KafkaDestination

            return KafkaDestination(uri, target, self._kafka_publisher())
        raise DeliveryError(f"unknown destination {uri!r}", permanent=True)

    def _kafka_publisher(self) -> KafkaPublisher:
        if not self.settings.kafka_bootstrap:
            raise DeliveryError("kafka: destinations need TASKSERVICE_KAFKA_BOOTSTRAP on the relay")
        if self._kafka is None:
            from taskservice.kafka import KafkaPublisher

            self._kafka = KafkaPublisher(self.settings.kafka_bootstrap)
        return self._kafka

    def forget(self, uri: str) -> None:
        """Drop a client after a failure so the next attempt reconnects from scratch."""
        client = self._clients.pop(uri, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for uri in list(self._clients):
            self.forget(uri)
        if self._kafka is not None:
            self._kafka.close()
            self._kafka = None

