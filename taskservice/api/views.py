"""JSON shapes of ledger records: each view maps a record onto its answer model (schemas.py), so what the API sends
is what the OpenAPI document declares; a field added here and not there fails at once, not in a client."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from taskservice.api import schemas
from taskservice.clock import utcnow
from taskservice.control import BulkResult
from taskservice.ledger.outbox import Delivery
from taskservice.ledger.queries import LedgerQueries
from taskservice.ledger.records import DeadLetter, Function, Invocation, LogLine, Transition
from taskservice.ledger.triggers import Trigger
from taskservice.submission import ACCEPTED, DUPLICATE, ItemOutcome
from taskservice.trigger_specs import TimerConfig


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def function_view(fn: Function) -> dict[str, Any]:
    return schemas.Function(
        name=fn.name, handler=fn.handler, timeout_s=fn.timeout_s, max_retries=fn.max_retries,
        max_event_age_s=fn.max_event_age_s, on_success=fn.on_success, on_failure=fn.on_failure,
        concurrency=fn.concurrency, description=fn.description, createdAt=fn.created_at,
        updatedAt=fn.updated_at).dump()


def _submitted(inv: Invocation) -> dict[str, Any]:
    return {"invocationId": inv.invocation_id, "requestId": inv.request_id, "function": inv.function,
            "status": inv.status}


def submitted_view(inv: Invocation) -> dict[str, Any]:
    return schemas.Submitted(**_submitted(inv)).dump()


def batch_view(outcomes: list[ItemOutcome]) -> dict[str, Any]:
    """POST …/invocations:batch: per item its status, the invocation it concerns and, when refused, why."""
    items = []
    for o in outcomes:
        inv = o.invocation
        items.append(schemas.BatchItemResult(
            index=o.index, status=o.status, invocationId=o.invocation_id,  # type: ignore[arg-type]  # 202/400/409/413
            requestId=None if inv is None else inv.request_id, invocationStatus=None if inv is None else inv.status,
            error=None if o.error is None else schemas.ErrorDetail(code=o.error.code, message=o.error.message)))
    accepted = sum(o.status == ACCEPTED for o in outcomes)
    duplicates = sum(o.status == DUPLICATE for o in outcomes)
    return schemas.BatchResult(accepted=accepted, duplicates=duplicates, refused=len(outcomes) - accepted - duplicates,
                               items=items).dump()


def starts_at(inv: Invocation) -> datetime | None:
    """When a delayed invocation that has not started yet may start (None once it ran or when not delayed)."""
    if inv.not_before is not None and inv.attempts == 0 and inv.status.value == "Enqueued":
        return inv.not_before
    return None


def _invocation_fields(inv: Invocation) -> dict[str, Any]:
    return {
        **_submitted(inv),
        "attempts": inv.attempts,
        "createdAt": inv.created_at,
        "startedAt": inv.started_at,
        "finishedAt": inv.finished_at,
        "durationMs": (None if inv.finished_at is None or inv.started_at is None
                       else round((inv.finished_at - inv.started_at).total_seconds() * 1000, 1)),
        "progress": {"percent": inv.progress_percent, "message": inv.progress_message},
        "result": _decoded(inv.result),
        "error": inv.error,
        "errorType": inv.error_type,
        "condition": inv.condition,
        "worker": inv.worker,
        "heartbeatAt": inv.heartbeat_at,
        "leaseExpiresAt": inv.lease_expires_at,
        "nextAttemptAt": inv.not_before,
        "startsAt": starts_at(inv),
        "logLines": inv.log_lines,
        "replayOf": inv.replay_of,
    }


def invocation_view(inv: Invocation, *, payload: bool = True) -> dict[str, Any]:
    """With its payload (InvocationState: stop, retry, the 409 body) or without (InvocationSummary: lists)."""
    if payload:
        return schemas.InvocationState(**_invocation_fields(inv), payload=_decoded(inv.payload)).dump()
    return schemas.InvocationSummary(**_invocation_fields(inv)).dump()


def invocation_detail_view(ledger: LedgerQueries, outbox: Any, inv: Invocation) -> dict[str, Any]:
    """GET …/invocations/{id}: the invocation with its transitions, destination deliveries and fan-out family."""
    parent = None if inv.parent_pk is None else ledger.get_by_pk(inv.parent_pk)
    return schemas.Invocation.model_validate({
        **_invocation_fields(inv), "payload": _decoded(inv.payload),
        "transitions": [transition_fields(t) for t in ledger.transitions(inv.pk)],
        "destinations": [delivery_fields(d) for d in outbox.for_invocation(inv.pk)],
        "parent": None if parent is None else _submitted(parent),
        "children": [{**_submitted(c), "progress": {"percent": c.progress_percent}} for c in ledger.children(inv.pk)],
    }).dump()


def bulk_view(result: BulkResult) -> dict[str, Any]:
    return schemas.BulkResult.model_validate({
        "changed": len(result.changed), "items": [_submitted(i) for i in result.changed],
        "refused": [{**_submitted(i), "reason": reason} for i, reason in result.refused]}).dump()


def delivery_fields(d: Delivery) -> dict[str, Any]:
    return {"destination": d.destination, "status": d.status, "attempts": d.attempts, "lastError": d.last_error,
            "deliveredAt": d.delivered_at, "condition": d.condition}


def dead_letter_page_view(items: list[DeadLetter], cursor: str | None) -> dict[str, Any]:
    return schemas.DeadLetterPage.model_validate({"items": [
        {"id": d.id, "function": d.function, "invocationId": d.invocation_id, "requestId": d.request_id,
         "condition": d.condition, "errorType": d.error_type, "createdAt": d.created_at,
         "record": json.loads(d.record)} for d in items], "next_cursor": cursor}).dump()


def transition_fields(t: Transition) -> dict[str, Any]:
    return {"from": t.from_status, "to": t.to_status, "attempt": t.attempt, "reason": t.reason, "at": t.at}


def logs_view(inv: Invocation, lines: list[LogLine]) -> dict[str, Any]:
    return schemas.Logs.model_validate({"invocationId": inv.invocation_id, "status": inv.status, "items": [
        {"attempt": line.attempt, "at": line.at, "level": line.level, "message": line.message}
        for line in lines]}).dump()


def invocation_page_view(items: list[Invocation], cursor: str | None) -> dict[str, Any]:
    return schemas.InvocationPage.model_validate({"items": [_invocation_fields(i) for i in items],
                                                  "next_cursor": cursor}).dump()


def trigger_view(t: Trigger) -> dict[str, Any]:
    if t.kind != "kafka":
        return _event_trigger_view(t)
    partitions = [{"topic": key.rsplit(":", 1)[0], "partition": int(key.rsplit(":", 1)[1]), **value}
                  for key, value in sorted(t.lag.items())]
    return schemas.Trigger.model_validate({
        "name": t.name, "function": t.function, "topics": t.topics, "consumer_group": t.consumer_group,
        "batch_size": t.batch_size, "batching_window_s": t.batching_window_s,
        "starting_position": t.starting_position, "enabled": t.enabled, "description": t.description,
        "lag": {"total": t.total_lag, "partitions": partitions}, "status": dict(t.state), "createdAt": t.created_at,
        "updatedAt": t.updated_at, "kind": "kafka"}).dump()


_EVENT_TRIGGERS: dict[str, type[schemas.Answer]] = {
    "timer": schemas.TimerTrigger, "storage": schemas.StorageTrigger, "queue": schemas.QueueTrigger}


def _event_trigger_view(t: Trigger) -> dict[str, Any]:
    """A timer, storage or queue trigger: its settings and what its process last reported (`status`)."""
    status = dict(t.state)
    if t.kind == "timer" and t.enabled:
        spec = t.spec()
        assert isinstance(spec, TimerConfig)
        status["nextFireTime"] = spec.schedule.next_after(utcnow()).isoformat()
    return _EVENT_TRIGGERS[t.kind].model_validate({
        "name": t.name, "kind": t.kind, "function": t.function, **t.config, "enabled": t.enabled,
        "description": t.description, "status": status, "createdAt": t.created_at,
        "updatedAt": t.updated_at}).dump()
