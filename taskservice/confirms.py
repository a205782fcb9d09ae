"""Publisher confirms awaited per batch, not per message: the kombu/py-amqp boundary that dispatch (bulk doorbells)
and the queue: destination (the relay) share.

kombu's `confirm_publish=True` makes every publish wait for its own Basic.Ack, one broker round trip (and one
RabbitMQ disk write) per message. Here the channel is put in confirm mode by hand, messages go out back to back, and
`settle` waits once for the acknowledgements of all of them. The guarantee is the same — a message counts as sent
only once the broker confirmed it — and a message the broker refused (Basic.Nack) or never confirmed is reported as
not sent, so the caller's usual retry (the reaper for doorbells, the outbox for records) covers it.

On a transport without confirms (the embedded filesystem broker) a publish returns once the message is on disk, so
there is nothing to wait for.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from typing import Any

from kombu import Connection

CONFIRM_TIMEOUT_S = 10.0


class ConfirmingConnection:
    """One broker connection whose default channel confirms in batches. Not thread-safe: one batch at a time."""

    def __init__(self, url: str, transport_options: dict[str, Any], *, timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        # confirm_publish would make py-amqp wait after each publish: the point is to wait once per batch.
        options = {k: v for k, v in transport_options.items() if k != "confirm_publish"}
        self.timeout_s = timeout_s
        self.connection = Connection(url, transport_options=options, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        channel: Any = self.connection.default_channel  # py-amqp's Channel: confirm_select, events
        self.channel = channel
        self.confirming = self.connection.transport.driver_type == "amqp"
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._refused: set[int] = set()
        if self.confirming:
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)

    def sent(self) -> int:
        """Call after each publish on `channel`: returns that message's delivery tag (they count from 1)."""
        tag = self._next_tag
        self._next_tag += 1
        if self.confirming:
            self._outstanding.add(tag)
        return tag

    def _settle_tags(self, tag: int, multiple: bool) -> set[int]:
        done = {t for t in self._outstanding if t <= tag} if multiple else {tag} & self._outstanding
        self._outstanding -= done
        return done

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle_tags(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._refused |= self._settle_tags(delivery_tag, multiple)

    def settle(self, tags: Collection[int]) -> set[int]:
        """Wait until the broker answered for every tag in `tags`; returns the tags it refused or did not confirm in
        time (empty: all confirmed). After a non-empty answer the connection should be closed: its state is unknown."""
        if not self.confirming:
            return set()
        wanted = set(tags)
        deadline = time.monotonic() + self.timeout_s
        while wanted & self._outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.connection.drain_events(timeout=remaining)
            except TimeoutError:
                break
        failed = wanted & (self._outstanding | self._refused)
        self._refused -= wanted
        return failed

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may raise again; it is gone either way
            self.connection.release()
