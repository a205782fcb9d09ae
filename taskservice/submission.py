"""The one way in: REST, CLI, Kafka ingest, replay, console retry and fan-out all submit through `Submitter.submit`.

Order matters: validate (nothing written on bad input) → ledger insert (the unique index decides duplicates) → ring
the broker. A failed ring is not an error for the caller: the invocation is durable in the ledger and the reaper rings
it again.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from taskservice.clock import utcnow
from taskservice.dispatch import Dispatcher
from taskservice.errors import (
    DispatchError,
    DuplicateInvocation,
    InvalidDelay,
    MalformedJSON,
    PayloadTooLarge,
    RequestError,
)
from taskservice.ledger import Ledger
from taskservice.ledger.bulk import NewInvocation
from taskservice.ledger.records import Invocation
from taskservice.specs import check_function_name, check_invocation_id

log = logging.getLogger(__name__)
#: The longest delay a submission may ask for (Function Compute's x-fc-async-delay allows up to an hour).
MAX_DELAY_S = 3600
#: The most items one `submit_many` call (one POST …/invocations:batch) takes: one transaction, one publish batch.
MAX_BATCH = 1000
ACCEPTED, REFUSED, DUPLICATE, TOO_LARGE = 202, 400, 409, 413


def check_delay(value: object, *, what: str = "X-Invocation-Delay") -> float:
    """A delay in seconds, 0..MAX_DELAY_S; a string (a header) is parsed. Refused before anything is written."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidDelay(f"{what} must be a number of seconds between 0 and {MAX_DELAY_S}, "
                               f"not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY_S \
            or value != value:
        raise InvalidDelay(f"{what} must be a number of seconds between 0 and {MAX_DELAY_S}, not {value!r}")
    return float(value)


def new_invocation_id() -> str:
    return f"inv_{uuid.uuid4().hex}"


class EncodedPayload(str):
    """JSON text a caller has already encoded (Kafka ingest builds batches of pre-encoded records): submitted as is,
    saving a second serialisation of large batches. Still checked against the payload limit."""


def encode_payload(payload: Any, max_bytes: int) -> str:
    """Canonical JSON text of a payload, refused when over the limit; the ledger stores exactly this string."""
    if isinstance(payload, EncodedPayload):
        size = len(payload.encode())
        if size > max_bytes:
            raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_bytes} bytes")
        return str(payload)
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MalformedJSON(f"payload is not JSON-serialisable: {exc}") from exc
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_bytes} bytes")
    return text


@dataclass(frozen=True)
class BatchItem:
    """One item of a bulk submission: a payload and, optionally, the caller's id for it."""

    payload: Any = None
    invocation_id: str | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one item, with the status a single submission would have answered: 202 (accepted: the new
    invocation), 409 (the id is taken, in the ledger or earlier in the same batch: the invocation holding it, when
    it can still be read), 400 (bad id, payload not JSON-serialisable) or 413 (payload over the limit) — the
    refused ones write nothing."""

    index: int
    status: int
    invocation_id: str | None
    invocation: Invocation | None = None
    error: RequestError | None = None


class Submitter:
    def __init__(self, ledger: Ledger, dispatcher: Dispatcher, *, max_payload_bytes: int) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.max_payload_bytes = max_payload_bytes

    def submit(self, function: str, payload: Any, *, invocation_id: str | None = None,
               replay_of: str | None = None, parent_pk: int | None = None, delay_s: float = 0.0,
               also: Callable[[Connection, int], None] | None = None) -> Invocation:
        """Record and dispatch one invocation. Raises DuplicateInvocation (409) when the id is taken.
        `replay_of` links a replay to the request id of the failure it re-runs; `parent_pk` a fan-out child to the
        invocation that submitted it. `delay_s` (0..3600) delays the start: the ledger row carries not_before (so
        a doorbell that comes early, or a re-ring by the reaper, cannot start it sooner) and the doorbell is
        published with the same countdown. `also(conn, pk)` adds rows to the insert's transaction."""
        check_function_name(function)
        invocation_id = new_invocation_id() if invocation_id is None else check_invocation_id(invocation_id)
        delay_s = check_delay(delay_s, what="delay")
        text = encode_payload(payload, self.max_payload_bytes)
        not_before = utcnow() + timedelta(seconds=delay_s) if delay_s > 0 else None
        invocation = self.ledger.create_invocation(function, invocation_id, str(uuid.uuid4()), text,
                                                   replay_of=replay_of, parent_pk=parent_pk,
                                                   queue=self.dispatcher.queue, not_before=not_before, also=also)
        self.ring(invocation.pk, delay_s=delay_s)
        return invocation

    def submit_many(self, function: str, items: Sequence[BatchItem]) -> list[ItemOutcome]:
        """Record up to MAX_BATCH invocations of `function` in one ledger transaction and ring them in one publish
        batch (confirms awaited once for all). Items are judged one by one: a bad item is refused on its own and the
        valid ones are accepted (see ItemOutcome). What concerns the whole call — an unknown function (404), more
        than MAX_BATCH items (413), the ledger unavailable (503) — raises, and then nothing is written."""
        check_function_name(function)
        if len(items) > MAX_BATCH:
            raise PayloadTooLarge(f"the batch has {len(items)} items; the limit is {MAX_BATCH} per call")
        outcomes: list[ItemOutcome | None] = [None] * len(items)
        fresh: list[tuple[int, NewInvocation]] = []
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            try:
                invocation_id = new_invocation_id() if item.invocation_id is None \
                    else check_invocation_id(item.invocation_id)
                text = encode_payload(item.payload, self.max_payload_bytes)
            except RequestError as exc:
                outcomes[index] = ItemOutcome(index, exc.http_status, item.invocation_id, error=exc)
                continue
            if invocation_id in first_index:
                outcomes[index] = ItemOutcome(index, DUPLICATE, invocation_id, error=DuplicateInvocation(
                    f"invocation {invocation_id!r} appears earlier in this batch, as item {first_index[invocation_id]}",
                    existing={}))
                continue
            first_index[invocation_id] = index
            fresh.append((index, NewInvocation(invocation_id, str(uuid.uuid4()), text)))
        written = self.ledger.create_invocations(function, [new for _, new in fresh], queue=self.dispatcher.queue)
        by_id: dict[str, Invocation | None] = {}
        for (index, new), (invocation, created) in zip(fresh, written, strict=True):
            by_id[new.invocation_id] = invocation
            if created:
                outcomes[index] = ItemOutcome(index, ACCEPTED, new.invocation_id, invocation)
            else:
                outcomes[index] = ItemOutcome(index, DUPLICATE, new.invocation_id, invocation, DuplicateInvocation(
                    f"invocation {new.invocation_id!r} of function {function!r} already exists"
                    + ("" if invocation is None else f" ({invocation.status.value})"), existing={}))
        done: list[ItemOutcome] = []
        for outcome in outcomes:
            assert outcome is not None
            if outcome.status == DUPLICATE and outcome.invocation is None and outcome.invocation_id is not None \
                    and outcome.invocation_id in by_id:
                outcome = ItemOutcome(outcome.index, DUPLICATE, outcome.invocation_id,
                                      by_id[outcome.invocation_id], outcome.error)
            done.append(outcome)
        self.ring_many([o.invocation.pk for o in done if o.status == ACCEPTED and o.invocation is not None])
        return done

    def ring_many(self, pks: Sequence[int]) -> bool:
        """Ring many doorbells as one publish batch; as with `ring`, a broker that is away is left to the reaper."""
        if not pks:
            return True
        try:
            self.dispatcher.ring_many(pks)
        except DispatchError as exc:
            log.warning("%d invocations wait for the broker; the reaper will ring them: %s", len(pks), exc)
            self.ledger.mark_undispatched(pks)
            return False
        return True

    def ring(self, pk: int, *, delay_s: float = 0.0) -> bool:
        """Ring the broker for an invocation the ledger already holds (new, retried, or to try again later). A broker
        that is down is not the caller's error: the invocation is flagged and the reaper rings it when it can.
        Returns whether the broker took the doorbell."""
        try:
            self.dispatcher.ring(pk, delay_s=delay_s)
        except DispatchError as exc:
            log.warning("invocation %s waits for the broker; the reaper will ring it: %s", pk, exc)
            self.ledger.mark_undispatched([pk])
            return False
        return True
