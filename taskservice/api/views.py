"""JSON shapes of ledger records, shared by the API, the CLI output and (later) the console."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from taskservice.clock import utcnow
from taskservice.control import BulkResult
from taskservice.ledger.outbox import Delivery
from taskservice.ledger.queries import LedgerQueries
from taskservice.ledger.records import DeadLetter, Function, Invocation, LogLine, Transition
from taskservice.ledger.triggers import Trigger
from taskservice.trigger_specs import TimerConfig


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def function_view(fn: Function) -> dict[str, Any]:
    return {"name": fn.name, "handler": fn.handler, "timeout_s": fn.timeout_s, "max_retries": fn.max_retries,
            "max_event_age_s": fn.max_event_age_s, "on_success": fn.on_success, "on_failure": fn.on_failure,
            "concurrency": fn.concurrency, "description": fn.description, "createdAt": iso(fn.created_at),
            "updatedAt": iso(fn.updated_at)}


def submitted_view(inv: Invocation) -> dict[str, Any]:
    return {"invocationId": inv.invocation_id, "requestId": inv.request_id, "function": inv.function,
            "status": inv.status.value}


def starts_at(inv: Invocation) -> str | None:
    """When a delayed invocation that has not started yet may start (None once it ran or when not delayed)."""
    if inv.not_before is not None and inv.attempts == 0 and inv.status.value == "Enqueued":
        return iso(inv.not_before)
    return None


def invocation_view(inv: Invocation, *, payload: bool = True) -> dict[str, Any]:
    view = {
        **submitted_view(inv),
        "attempts": inv.attempts,
        "createdAt": iso(inv.created_at),
        "startedAt": iso(inv.started_at),
        "finishedAt": iso(inv.finished_at),
        "durationMs": (None if inv.finished_at is None or inv.started_at is None
                       else round((inv.finished_at - inv.started_at).total_seconds() * 1000, 1)),
        "progress": {"percent": inv.progress_percent, "message": inv.progress_message},
        "result": _decoded(inv.result),
        "error": inv.error,
        "errorType": inv.error_type,
        "condition": inv.condition,
        "worker": inv.worker,
        "heartbeatAt": iso(inv.heartbeat_at),
        "leaseExpiresAt": iso(inv.lease_expires_at),
        "nextAttemptAt": iso(inv.not_before),
        "startsAt": starts_at(inv),
        "logLines": inv.log_lines,
        "replayOf": inv.replay_of,
    }
    if payload:
        view["payload"] = _decoded(inv.payload)
    return view


def family_view(ledger: LedgerQueries, inv: Invocation) -> dict[str, Any]:
    """The fan-out family of one invocation: who submitted it, and what it submitted."""
    parent = None if inv.parent_pk is None else ledger.get_by_pk(inv.parent_pk)
    return {"parent": None if parent is None else submitted_view(parent),
            "children": [{**submitted_view(c), "progress": {"percent": c.progress_percent}}
                         for c in ledger.children(inv.pk)]}


def bulk_view(result: BulkResult) -> dict[str, Any]:
    return {"changed": len(result.changed), "items": [submitted_view(i) for i in result.changed],
            "refused": [{**submitted_view(i), "reason": reason} for i, reason in result.refused]}


def delivery_view(d: Delivery) -> dict[str, Any]:
    return {"destination": d.destination, "status": d.status, "attempts": d.attempts, "lastError": d.last_error,
            "deliveredAt": iso(d.delivered_at), "condition": d.condition}


def dead_letter_view(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "function": d.function, "invocationId": d.invocation_id, "requestId": d.request_id,
            "condition": d.condition, "errorType": d.error_type, "createdAt": iso(d.created_at),
            "record": json.loads(d.record)}


def transition_view(t: Transition) -> dict[str, Any]:
    return {"from": None if t.from_status is None else t.from_status.value, "to": t.to_status.value,
            "attempt": t.attempt, "reason": t.reason, "at": iso(t.at)}


def log_view(line: LogLine) -> dict[str, Any]:
    return {"attempt": line.attempt, "at": iso(line.at), "level": line.level, "message": line.message}


def trigger_view(t: Trigger) -> dict[str, Any]:
    if t.kind != "kafka":
        return _event_trigger_view(t)
    partitions = [{"topic": key.rsplit(":", 1)[0], "partition": int(key.rsplit(":", 1)[1]), **value}
                  for key, value in sorted(t.lag.items())]
    return {"name": t.name, "function": t.function, "topics": t.topics, "consumer_group": t.consumer_group,
            "batch_size": t.batch_size, "batching_window_s": t.batching_window_s,
            "starting_position": t.starting_position, "enabled": t.enabled, "description": t.description,
            "lag": {"total": t.total_lag, "partitions": partitions}, "createdAt": iso(t.created_at),
            "updatedAt": iso(t.updated_at), "kind": "kafka"}


def _event_trigger_view(t: Trigger) -> dict[str, Any]:
    """A timer, storage or queue trigger: its settings and what its process last reported (`status`)."""
    status = dict(t.state)
    if t.kind == "timer" and t.enabled:
        spec = t.spec()
        assert isinstance(spec, TimerConfig)
        status["nextFireTime"] = iso(spec.schedule.next_after(utcnow()))
    return {"name": t.name, "kind": t.kind, "function": t.function, **t.config, "enabled": t.enabled,
            "description": t.description, "status": status, "createdAt": iso(t.created_at),
            "updatedAt": iso(t.updated_at)}
