"""The one way in: REST, CLI, Kafka ingest, replay, console retry and fan-out all submit through `Submitter.submit`.

Order matters: validate (nothing written on bad input) → ledger insert (the unique index decides duplicates) → ring
the broker. A failed ring is not an error for the caller: the invocation is durable in the ledger and the reaper rings
it again.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from taskservice.clock import utcnow
from taskservice.dispatch import Dispatcher
from taskservice.errors import DispatchError, InvalidDelay, MalformedJSON, PayloadTooLarge
from taskservice.ledger import Ledger
from taskservice.ledger.records import Invocation
from taskservice.specs import check_function_name, check_invocation_id

log = logging.getLogger(__name__)
#: The longest delay a submission may ask for (Function Compute's x-fc-async-delay allows up to an hour).
MAX_DELAY_S = 3600


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
