"""Claim → run → persist, for one doorbell. The only worker code that talks to the ledger about an attempt."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from taskservice.backoff import backoff_delay
from taskservice.clock import utcnow
from taskservice.errors import TaskServiceError
from taskservice.ledger import Ledger, Status
from taskservice.ledger.records import Claim, Invocation
from taskservice.submission import Submitter
from workers.sandbox import Job, Outcome, preload_module, run_isolated

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.5
STOP_CHECK_S = 0.5  # a stop request reaches a running handler within about this long


class _AttemptHooks:
    """Buffers logs and progress from the handler and writes them with the heartbeat, so a chatty handler costs a
    few ledger writes per second, not one per line."""

    def __init__(self, runner: Runner, claim: Claim) -> None:
        self.runner = runner
        self.pk = claim.invocation.pk
        self.attempt = claim.attempt
        self.logs: list[tuple[datetime, str, str]] = []
        self.progress: tuple[float, str] | None = None
        self.last_flush = time.monotonic()
        self.last_heartbeat = time.monotonic()
        self.last_stop_check = time.monotonic()

    def on_log(self, at: str, level: str, message: str) -> None:
        self.logs.append((datetime.fromisoformat(at), level, message))

    def on_progress(self, percent: float, message: str) -> None:
        self.progress = (percent, message)

    def on_submit(self, function: str, payload: Any, invocation_id: str | None) -> dict[str, Any]:
        try:
            child = self.runner.submitter.submit(function, payload, invocation_id=invocation_id, parent_pk=self.pk)
        except TaskServiceError as exc:
            existing = getattr(exc, "existing", None)
            return {"error": {"code": exc.code, "message": exc.message}, "existing": existing}
        return {"invocationId": child.invocation_id, "requestId": child.request_id, "function": child.function,
                "status": child.status.value}

    def on_children(self, children: list[list[str]]) -> dict[str, Any]:
        """Statuses of this invocation's own children (a parent waiting for its fan-out polls this)."""
        items = []
        for function, invocation_id in children:
            child = self.runner.ledger.find_invocation(function, invocation_id)
            if child is None or child.parent_pk != self.pk:
                return {"error": {"code": "NotAChild",
                                  "message": f"{function}/{invocation_id} is not a child of this invocation"}}
            items.append({"invocationId": child.invocation_id, "function": child.function,
                          "status": child.status.value, "attempts": child.attempts,
                          "progress": child.progress_percent, "errorType": child.error_type, "error": child.error,
                          "result": None if child.result is None else json.loads(child.result)})
        return {"items": items}

    def flush_logs(self) -> None:
        self.runner.ledger.append_logs(self.pk, self.attempt, self.logs)
        self.logs = []

    def flush(self) -> Status | None:
        self.flush_logs()
        status = self.runner.ledger.heartbeat(self.pk, self.attempt, self.runner.lease_s, progress=self.progress)
        self.progress = None
        now = time.monotonic()
        self.last_flush = self.last_heartbeat = now
        return status

    def on_tick(self) -> str | None:
        now = time.monotonic()
        pending = bool(self.logs) or self.progress is not None
        if (pending and now - self.last_flush >= FLUSH_EVERY_S) or now - self.last_heartbeat >= self.runner.heartbeat_s:
            status = self.flush()
        elif now - self.last_stop_check >= STOP_CHECK_S:
            status = self.runner.ledger.current_status(self.pk, self.attempt)
        else:
            return None
        self.last_stop_check = now
        if status not in (Status.RUNNING, Status.STOPPING):
            return "abandon"  # the lease was taken over: this attempt is no longer ours to finish
        return "stop" if status is Status.STOPPING else None


class Runner:
    def __init__(self, ledger: Ledger, submitter: Submitter, *, worker_id: str,
                 lease_s: float, heartbeat_s: float, retry_base_s: float, retry_max_s: float,
                 storage_url: str = "", storage_endpoints: str = "") -> None:
        self.ledger = ledger
        self.submitter = submitter
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.storage_url = storage_url  # handed to each attempt, which opens its own storage client
        self.storage_endpoints = storage_endpoints

    def run(self, pk: int) -> str:
        """Handle one doorbell; returns a word saying what happened (for the worker log and tests)."""
        claimed = self.ledger.claim(pk, self.worker_id, self.lease_s)
        if claimed is None:
            return "skipped"  # duplicate delivery, already running elsewhere, or already ended
        if isinstance(claimed, Invocation):
            return self._not_started(claimed)
        return self._execute(claimed)

    def _not_started(self, invocation: Invocation) -> str:
        if invocation.status.value in ("Enqueued", "Retrying"):
            # Too early (backoff) or at the function's concurrency limit: ring again later, keep the status.
            self.submitter.ring(invocation.pk, delay_s=1.0)
            self.ledger.defer(invocation.pk, 1.0)
            return "deferred"
        return invocation.status.value.lower()

    def _execute(self, claim: Claim) -> str:
        invocation, function = claim.invocation, claim.function
        job = Job(handler=function.handler, payload=invocation.payload, request_id=invocation.request_id,
                  invocation_id=invocation.invocation_id, function=function.name, attempt=claim.attempt,
                  timeout_s=function.timeout_s, storage_url=self.storage_url,
                  storage_endpoints=self.storage_endpoints)
        preload_module(function.handler)
        hooks = _AttemptHooks(self, claim)
        outcome = run_isolated(job, hooks)
        if outcome.kind == "abandoned":
            return "abandoned"
        if outcome.kind != "succeeded":
            # The invocation keeps only the latest error; the log keeps every attempt's, traceback included.
            hooks.logs.append((utcnow(), "ERROR", f"[taskservice] attempt {claim.attempt} ended {outcome.kind}: "
                                                   f"{outcome.error_type}: {outcome.error}"))
        hooks.flush_logs()  # the outcome's own transaction ends the lease: no last heartbeat needed
        return self._persist(claim, outcome)

    def _persist(self, claim: Claim, outcome: Outcome) -> str:
        pk, attempt = claim.invocation.pk, claim.attempt
        if outcome.kind == "succeeded":
            self.ledger.succeed(pk, attempt, outcome.result)
            return "succeeded"
        if outcome.kind == "invalid":
            self.ledger.invalidate(pk, attempt, error_type=outcome.error_type, error=outcome.error)
            return "invalid"
        if outcome.kind == "stopped":
            self.ledger.stopped(pk, attempt)
            return "stopped"
        delay = backoff_delay(attempt, self.retry_base_s, self.retry_max_s)
        moved = self.ledger.fail(pk, attempt, error_type=outcome.error_type, error=outcome.error,
                                 max_retries=claim.function.max_retries, retry_delay_s=delay,
                                 retry_base=claim.invocation.retry_base)
        if moved is not None and moved.status is Status.RETRYING:
            self.submitter.ring(pk, delay_s=delay)
            return "retrying"
        return "failed"
