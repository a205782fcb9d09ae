"""Dead-letter replay: re-submit a failure record's request through the one submission path.

The invocation id is derived from the failure's requestId (`replay_<requestId>`), so replaying the same failure
twice — from the store, or from an external queue holding the same record — yields one invocation and then 409,
unless `force` adds a fresh suffix. The new invocation's `replay_of` names the original request.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from taskservice.errors import DuplicateInvocation, InvalidReplayRequest, TaskServiceError
from taskservice.ledger import Ledger
from taskservice.ledger.dead_letters import DeadLetterStore
from taskservice.ledger.records import DeadLetter, Invocation
from taskservice.specs import FUNCTION_NAME, INVOCATION_ID, ReplayMany
from taskservice.submission import Submitter

_UNSET: Any = object()


def replay_invocation_id(request_id: str, *, force: bool) -> str:
    """`replay_<requestId>`, hashed when the request id has characters an invocation id may not hold."""
    base = f"replay_{request_id}"
    if not INVOCATION_ID.fullmatch(base) or len(base) > 100:
        base = f"replay_h{hashlib.sha256(request_id.encode()).hexdigest()[:40]}"
    return f"{base}_f{uuid.uuid4().hex[:10]}" if force else base


@dataclass(frozen=True)
class ReplayOutcome:
    """One line of a bulk replay: what was replayed and how it went (replayed | duplicate | failed)."""

    source: str  # "dead-letter:<id>" or "record:<requestId>"
    function: str | None
    invocation_id: str | None
    outcome: str
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {"source": self.source, "function": self.function, "invocationId": self.invocation_id,
                "outcome": self.outcome, "error": self.error}


def _record_fields(record: dict[str, Any], target_function: str | None) -> tuple[str, str, Any]:
    """(function, requestId, payload) of an FC destination record; InvalidReplayRequest when it is not one."""
    context = record.get("requestContext")
    if not isinstance(context, dict) or not isinstance(context.get("requestId"), str) or not context["requestId"]:
        raise InvalidReplayRequest("not a Function Compute record: requestContext.requestId is missing")
    function = target_function
    if function is None:
        arn = context.get("functionArn")
        function = arn.rsplit("/", 1)[-1] if isinstance(arn, str) else ""
    if not FUNCTION_NAME.fullmatch(function or ""):
        raise InvalidReplayRequest(f"cannot tell the function from requestContext.functionArn "
                                   f"{context.get('functionArn')!r}; pass a target function")
    raw = record.get("requestPayload")
    try:
        payload = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        payload = raw  # FC posts the payload as a string; a non-JSON one is replayed as that string
    return function, context["requestId"], payload


class Replayer:
    def __init__(self, ledger: Ledger, dead_letters: DeadLetterStore, submitter: Submitter) -> None:
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.submitter = submitter

    def replay_dead_letter(self, dead_letter_id: int, *, payload: Any = _UNSET, force: bool = False) -> Invocation:
        """Replay one stored failure, optionally with an edited payload. DuplicateInvocation when already done."""
        dead = self.dead_letters.get(dead_letter_id)
        return self._replay_stored(dead, payload=payload, force=force)

    def _replay_stored(self, dead: DeadLetter, *, payload: Any, force: bool) -> Invocation:
        if payload is _UNSET:
            _fn, _rid, payload = _record_fields(json.loads(dead.record), dead.function)
        return self.submitter.submit(dead.function, payload,
                                     invocation_id=replay_invocation_id(dead.request_id, force=force),
                                     replay_of=dead.request_id)

    def replay_record(self, record: dict[str, Any], *, target_function: str | None = None,
                      force: bool = False) -> Invocation:
        """Replay an FC failure record read from an external queue or topic, idempotently by its requestId."""
        function, request_id, payload = _record_fields(record, target_function)
        return self.submitter.submit(function, payload, invocation_id=replay_invocation_id(request_id, force=force),
                                     replay_of=request_id)

    def replay_many(self, request: ReplayMany) -> list[ReplayOutcome]:
        """Replay by filter (newest first, up to `limit`) or a list of external records; never stops on one error."""
        outcomes: list[ReplayOutcome] = []
        if request.records is not None:
            for record in request.records:
                rid = str((record.get("requestContext") or {}).get("requestId", "?"))
                outcomes.append(self._attempt(f"record:{rid}", lambda r=record: self.replay_record(
                    r, target_function=request.target_function, force=request.force)))
            return outcomes
        items, _cursor = self.ledger.list_dead_letters(function=request.function, condition=request.condition,
                                                       since=request.since, until=request.until, limit=request.limit)
        for dead in items:
            outcomes.append(self._attempt(f"dead-letter:{dead.id}", lambda d=dead: self._replay_stored(
                d, payload=_UNSET, force=request.force)))
        return outcomes

    @staticmethod
    def _attempt(source: str, replay: Any) -> ReplayOutcome:
        try:
            inv: Invocation = replay()
        except DuplicateInvocation as exc:
            return ReplayOutcome(source, None, None, "duplicate", exc.message)
        except TaskServiceError as exc:
            return ReplayOutcome(source, None, None, "failed", f"{exc.code}: {exc.message}")
        return ReplayOutcome(source, inv.function, inv.invocation_id, "replayed")
