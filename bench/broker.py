"""RabbitMQ housekeeping for the bench's own, uniquely named queues: depth, purge between phases, delete at the end.

Uses kombu (already a dependency) rather than rabbitmqctl, which needs root and the Erlang cookie.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable

from kombu import Connection


class BrokerAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def server_version(self) -> str:
        with Connection(self.url, connect_timeout=5) as conn:
            conn.connect()
            props = conn.connection.server_properties
        product = props.get("product", "broker")
        return f"{product} {props.get('version', '?')}"

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` (0 when it does not exist yet)."""
        with Connection(self.url, connect_timeout=5) as conn:
            channel = conn.channel()
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except Exception:  # passive declare of a missing queue closes the channel with 404
                return 0

    def purge(self, queue: str) -> int:
        with Connection(self.url, connect_timeout=5) as conn:
            channel = conn.channel()
            try:
                return int(channel.queue_purge(queue) or 0)
            except Exception:
                return 0

    def delete(self, names: Iterable[str]) -> None:
        """Delete each queue and the same-named exchange (taskservice and Celery both declare one per queue)."""
        with Connection(self.url, connect_timeout=5) as conn:
            for name in names:
                for drop in ("queue_delete", "exchange_delete"):
                    channel = conn.channel()
                    with contextlib.suppress(Exception):  # already gone, or never declared
                        getattr(channel, drop)(name)
                    with contextlib.suppress(Exception):  # a failed drop may have closed it already
                        channel.close()
