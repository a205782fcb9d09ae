"""The relay: drains the outbox into destinations, at least once, with backoff, recording every attempt.

Crash-safe by construction: a record leaves the outbox only after its destination accepted it, and a claim whose
relay died lapses after `lease_s` and is taken by another relay. Several relays share the work through claims.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from taskservice.backoff import backoff_delay
from taskservice.db import is_outage
from taskservice.destinations.base import DeliveryError
from taskservice.destinations.registry import Destinations
from taskservice.ledger.outbox import Delivery, Outbox
from taskservice.specs import is_webhook

log = logging.getLogger(__name__)
WEBHOOK_CHUNK = 10  # webhooks go one request per record, each up to its timeout: check the claim often


class Relay:
    def __init__(self, outbox: Outbox, destinations: Destinations, *, relay_id: str, batch: int, lease_s: float,
                 idle_s: float, backoff_base_s: float, backoff_max_s: float, max_attempts: int) -> None:
        self.outbox = outbox
        self.destinations = destinations
        self.relay_id = relay_id
        self.batch = batch
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self._stop = threading.Event()

    def run_once(self) -> int:
        """Deliver one batch; returns how many records it handled (0 = nothing due)."""
        claimed = self.outbox.claim(self.relay_id, limit=self.batch, lease_s=self.lease_s)
        claim_deadline = time.monotonic() + self.lease_s * 0.6
        by_destination: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_destination[delivery.destination].append(delivery)
        for uri, group in by_destination.items():
            self._deliver_group(uri, group, claim_deadline)
        return len(claimed)

    def _deliver_group(self, uri: str, group: list[Delivery], claim_deadline: float) -> None:
        """Deliver in chunks, and hand back what is left when the claim is about to lapse: a slow destination
        (a webhook at its timeout) must not let another relay take and re-send records still being sent."""
        chunk = WEBHOOK_CHUNK if is_webhook(uri) else len(group)
        for start in range(0, len(group), chunk):
            if time.monotonic() > claim_deadline:
                self.outbox.release([d.id for d in group[start:]])
                return
            self._deliver_chunk(uri, group[start:start + chunk])

    def _deliver_chunk(self, uri: str, group: list[Delivery]) -> None:
        try:
            results = self.destinations.get(uri).deliver([d.record for d in group])
        except DeliveryError as exc:
            results = [exc] * len(group)
        ok = [d.id for d, error in zip(group, results, strict=True) if error is None]
        self.outbox.delivered(self.relay_id, ok)
        failures = [(d, e) for d, e in zip(group, results, strict=True) if e is not None]
        if failures:
            self.destinations.forget(uri)
            log.warning("%d record(s) for %s not delivered: %s", len(failures), uri, failures[0][1].message)
        for delivery, error in failures:
            attempts = delivery.attempts + 1
            give_up = error.permanent or attempts >= self.max_attempts
            retry_in_s = backoff_delay(attempts, self.backoff_base_s, self.backoff_max_s)
            self.outbox.failed(delivery, error.message, retry_in_s=retry_in_s, give_up=give_up)

    def run_forever(self) -> None:
        log.info("relay %s started", self.relay_id)
        failures = 0
        while not self._stop.is_set():  # a stop takes effect between batches: a claimed batch is always finished
            try:
                handled = self.run_once()
                failures = 0
            except Exception as exc:  # a database blip must not end the relay
                failures += 1
                if is_outage(exc):
                    log.warning("relay: ledger unreachable (%s); trying again", type(exc).__name__)
                else:
                    log.exception("relay pass failed; trying again")
                self._stop.wait(backoff_delay(failures, self.idle_s, 5.0))
                continue
            if handled == 0:
                self._stop.wait(self.idle_s)
        self.destinations.close()

    def stop(self) -> None:
        self._stop.set()
