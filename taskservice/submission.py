"""The one way in: REST, CLI, Kafka ingest, replay, console retry and fan-out all submit through `Submitter.submit`.

Order matters: validate (nothing written on bad input) → ledger insert (the unique index decides duplicates) → ring
the broker. A failed ring is not an error for the caller: the invocation is durable in the ledger and the reaper rings
it again.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from taskservice.dispatch import Dispatcher
from taskservice.errors import DispatchError, MalformedJSON, PayloadTooLarge
from taskservice.ledger import Ledger
from taskservice.ledger.records import Invocation
from taskservice.specs import check_function_name, check_invocation_id

log = logging.getLogger(__name__)


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
               replay_of: str | None = None, parent_pk: int | None = None) -> Invocation:
        """Record and dispatch one invocation. Raises DuplicateInvocation (409) when the id is taken.
        `replay_of` links a replay to the request id of the failure it re-runs; `parent_pk` a fan-out child to the
        invocation that submitted it."""
        check_function_name(function)
        invocation_id = new_invocation_id() if invocation_id is None else check_invocation_id(invocation_id)
        text = encode_payload(payload, self.max_payload_bytes)
        invocation = self.ledger.create_invocation(function, invocation_id, str(uuid.uuid4()), text,
                                                   replay_of=replay_of, parent_pk=parent_pk,
                                                   queue=self.dispatcher.queue)
        self.ring(invocation.pk)
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
