"""Kafka ingest: each enabled trigger's topics become batch invocations, with no record lost or invoked twice.

Per consumed batch, for each partition: drop what the ledger already holds (see `_fresh`), cut the rest into units
(`ingest.batch.plan`), submit them in batches through `Submitter.submit_many` — a taken id means an earlier run
already did it — or write a dead letter for an unusable record, and only then commit the partition's next offset,
synchronously. A process killed anywhere in between re-reads from the last commit; the invocation ids (topic,
partition, first/last offset) and the probe after each assignment make the re-read a no-op, even when the broker
returns the re-read records in different batches than the first time. The records a re-read finds already in the
ledger are counted in the trigger's state (`duplicates`, shown in its `status`), written only when there are some.

Several `ingest` processes share a trigger through its consumer group; one process runs every enabled trigger,
one consumer (thread) each, and follows trigger changes in the ledger.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

from taskservice.ingest.batch import (
    INVALID_RECORD,
    PAYLOAD_TOO_LARGE,
    Unit,
    batch_id,
    batch_prefix,
    by_partition,
    last_offset_of,
    plan,
)
from taskservice.kafka import BatchConsumer, KafkaRecord
from taskservice.ledger.triggers import Trigger
from taskservice.services import Services
from taskservice.submission import ACCEPTED, DUPLICATE, MAX_BATCH, TOO_LARGE, BatchItem, EncodedPayload
from taskservice.trigger_threads import TriggerThreads

log = logging.getLogger(__name__)
LAG_REPORT_S = 5.0
ERROR_BACKOFF_S = 2.0
READ_AHEAD = MAX_BATCH  # records taken per read at most when they are already there (see _loop)

Partition = tuple[str, int]


class TriggerConsumer:
    """One trigger's consumer loop; `run` returns when `stop` is set."""

    def __init__(self, trigger: Trigger, services: Services, bootstrap: str, *, lag_report_s: float = LAG_REPORT_S
                 ) -> None:
        self.trigger = trigger
        self.services = services
        self.bootstrap = bootstrap
        self.lag_report_s = lag_report_s
        self.stop = threading.Event()
        self._verified: set[Partition] = set()  # partitions whose ledger state past the commit is known
        self._next: dict[Partition, int] = {}  # first offset the ledger does not hold yet, once known
        self.submitted = 0
        self.rejected = 0
        self.duplicates = 0  # records re-read that the ledger already held (skipped, or a taken id)

    # --- partition bookkeeping, called by librdkafka from inside consume() --------------------------------------
    def _forget(self, partitions: Sequence[Partition]) -> None:
        for key in partitions:
            self._verified.discard(key)
            self._next.pop(key, None)

    def run(self) -> None:
        """Consume until stopped; on any error start over from the committed offsets after a short pause."""
        while not self.stop.is_set():
            consumer = None
            try:
                consumer = BatchConsumer(self.bootstrap, self.trigger.consumer_group, self.trigger.topics,
                                         starting_position=self.trigger.starting_position,
                                         on_assign=self._forget, on_revoke=self._forget)
                self._loop(consumer)
            except Exception:
                log.exception("trigger %s: consumer failed; starting over from the committed offsets",
                              self.trigger.name)
                self.stop.wait(ERROR_BACKOFF_S)
            finally:
                self._forget(list(self._verified | set(self._next)))
                if consumer is not None:
                    consumer.close()

    def _loop(self, consumer: BatchConsumer) -> None:
        t = self.trigger
        next_report = 0.0
        while not self.stop.is_set():
            # Ask for a batch per assigned partition: the loop cuts per partition, so the whole read is used.
            wanted = min(t.batch_size * max(1, len(consumer.assignment)), 100_000)
            records = consumer.consume(wanted, t.batching_window_s)
            if not records and t.batching_window_s == 0:
                records = consumer.consume(1, 0.5)
                if records:
                    records += consumer.consume(wanted - 1, 0)
            if len(records) >= wanted and wanted < READ_AHEAD:
                # Small batches (batch size 1): take what has already arrived as well, without waiting, so one bulk
                # submission writes many invocations instead of a transaction per record or two.
                records += consumer.consume(READ_AHEAD - len(records), 0)
            if records:
                consumer.commit(self.process(records))
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + self.lag_report_s
                lag = consumer.lag()
                self.services.triggers.report_lag(t.name, {f"{k[0]}:{k[1]}": v for k, v in lag.items()})

    def process(self, records: Sequence[KafkaRecord]) -> dict[Partition, int]:
        """Write every record to the ledger (invocations or dead letters); returns the offsets now safe to commit.

        Invocations go in through `Submitter.submit_many`, up to MAX_BATCH per transaction across partitions. Per
        partition the units still reach the ledger in offset order — the pending invocations are written before any
        dead letter that follows them — so what a crash leaves written is always a prefix of each partition's units,
        which is what `_fresh` walks after a restart."""
        commits: dict[Partition, int] = {}
        pending: list[Unit] = []
        before = self.duplicates
        for key, group in by_partition(records).items():
            fresh = self._fresh(key, group)
            self.duplicates += len(group) - len(fresh)
            for unit in plan(fresh, batch_size=self.trigger.batch_size,
                             max_payload_bytes=self.services.settings.max_payload_bytes):
                if unit.error_type is None:
                    pending.append(unit)
                    if len(pending) >= MAX_BATCH:
                        self._submit(pending)
                else:
                    self._submit(pending)
                    self._reject(unit)
            commits[key] = max(group[-1].offset + 1, self._next.get(key, 0))
            if fresh:
                self._next[key] = fresh[-1].offset + 1
        self._submit(pending)
        if self.duplicates > before:
            self.services.triggers.bump_state(self.trigger.name, add={"duplicates": self.duplicates - before})
        return commits

    def _fresh(self, key: Partition, records: list[KafkaRecord]) -> list[KafkaRecord]:
        """The records the ledger does not hold yet. After an assignment, the batches an earlier owner submitted
        but did not commit are found by their ids' prefix, chained first offset to last."""
        start = self._next.get(key)
        if start is not None:
            records = [r for r in records if r.offset >= start]
        while key not in self._verified and records:
            last = self._done_until(key, records[0].offset)
            if last is None:
                self._verified.add(key)
                break
            self._next[key] = last + 1
            records = [r for r in records if r.offset > last]
        return records

    def _done_until(self, key: Partition, first: int) -> int | None:
        """Last offset of the unit starting at `first` that is already in the ledger, if any."""
        function = self.trigger.function
        prefix = batch_prefix(key[0], key[1], first)
        for invocation_id in self.services.ledger.invocation_ids_with_prefix(function, prefix):
            last = last_offset_of(invocation_id, prefix)
            if last is not None:
                return last
        if self.services.dead_letters.find(function, batch_id(key[0], key[1], first, first)) is not None:
            return first
        return None

    def _submit(self, units: list[Unit]) -> None:
        """Submit the pending batch units in one transaction and empty the list. A taken id means an earlier run
        (or the partition's previous owner) wrote it already; a unit refused for its size is kept as a dead letter."""
        if not units:
            return
        outcomes = self.services.submitter.submit_many(
            self.trigger.function, [BatchItem(EncodedPayload(u.payload), u.invocation_id) for u in units])
        for unit, outcome in zip(units, outcomes, strict=True):
            if outcome.status == ACCEPTED:
                self.submitted += 1
            elif outcome.status == DUPLICATE:
                self.duplicates += len(json.loads(unit.payload))  # rare: another process wrote it meanwhile
            else:
                error = outcome.error.message if outcome.error is not None else "refused"
                error_type = PAYLOAD_TOO_LARGE if outcome.status == TOO_LARGE else INVALID_RECORD
                self._reject(Unit(unit.invocation_id, unit.first, unit.last, unit.payload, error_type, error))
        units.clear()

    def _reject(self, unit: Unit) -> None:
        assert unit.error_type is not None and unit.error is not None
        function = self.trigger.function
        log.warning("trigger %s: %s at %s: %s", self.trigger.name, unit.error_type, unit.invocation_id, unit.error)
        self.services.dead_letters.reject(function, unit.invocation_id, unit.payload, error_type=unit.error_type,
                                          error=unit.error)
        self.rejected += 1


class Ingestor(TriggerThreads[TriggerConsumer]):
    """Runs one TriggerConsumer thread per enabled Kafka trigger and follows the trigger table."""

    kind = "kafka"

    def __init__(self, services: Services, bootstrap: str, *, only: Sequence[str] = (), refresh_s: float = 5.0
                 ) -> None:
        super().__init__(services, only=only, refresh_s=refresh_s)
        self.bootstrap = bootstrap
        self.started = f"ingest started (Kafka at {bootstrap})"

    def loop_for(self, trigger: Trigger) -> TriggerConsumer:
        return TriggerConsumer(trigger, self.services, self.bootstrap)

    def describe(self, loop: TriggerConsumer) -> str:
        trigger = loop.trigger
        return f"consuming {','.join(trigger.topics)} for function {trigger.function} (group {trigger.consumer_group})"
