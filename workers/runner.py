"""Claim → run → persist, for one doorbell. The only worker code that talks to the ledger about an attempt."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from taskservice.backoff import backoff_delay
from taskservice.clock import utcnow
from taskservice.db import is_outage
from taskservice.errors import TaskServiceError
from taskservice.flowdef.limits import MAX_STEP_IO_BYTES
from taskservice.ledger import Ledger, Status
from taskservice.ledger.flows import FlowStore
from taskservice.ledger.records import Claim, Invocation
from taskservice.storage.events import ObjectEvent
from taskservice.submission import Submitter, encode_payload
from workers.executors import ExecutorSlot
from workers.lease import AttemptLease
from workers.sandbox import Job, Outcome, kill_tree, preload_module, run_isolated

log = logging.getLogger(__name__)

CLAIM_PATIENCE_S = 10.0  # how long a doorbell waits out a ledger outage before it is rung again for later


class _AttemptHooks:
    """What the supervision loop hears from the handler, handed to the attempt's lease (logs, progress, verdicts)
    and to the ledger (fan-out). Nothing here waits on the ledger but the handler's own fan-out calls."""

    def __init__(self, runner: Runner, claim: Claim, lease: AttemptLease) -> None:
        self.runner = runner
        self.pk = claim.invocation.pk
        self.attempt = claim.attempt
        self.lease = lease

    def on_start(self, pid: int) -> None:
        self.lease.start(on_fence=lambda: kill_tree(pid))

    def on_log(self, at: str, level: str, message: str) -> None:
        self.lease.add_log(datetime.fromisoformat(at), level, message)

    def on_progress(self, percent: float, message: str) -> None:
        self.lease.set_progress(percent, message)

    def on_submit(self, function: str, payload: Any, invocation_id: str | None) -> dict[str, Any]:
        def submit() -> dict[str, Any]:
            child = self.runner.submitter.submit(function, payload, invocation_id=invocation_id, parent_pk=self.pk)
            return {"invocationId": child.invocation_id, "requestId": child.request_id, "function": child.function,
                    "status": child.status.value}

        return _answer(submit)

    def on_start_execution(self, flow: str, payload: Any, name: str) -> dict[str, Any]:
        """Start a flow execution for the handler (an old media parent handing its work to its flow)."""
        def start() -> dict[str, Any]:
            text = encode_payload(payload, MAX_STEP_IO_BYTES)
            execution = FlowStore(self.runner.ledger.engine).start_named(flow, name, text)
            return {"executionName": execution.name, "flow": execution.flow, "requestId": execution.request_id,
                    "status": execution.status}

        return _answer(start)

    def on_storage_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The handler wrote or removed objects through context.storage: fire the storage triggers watching them."""
        if self.runner.storage_events is None:
            return {"submitted": 0}
        try:
            published = self.runner.storage_events([ObjectEvent(**{**e, "time": datetime.fromisoformat(e["time"])})
                                                    for e in events])
        except Exception as exc:
            if not is_outage(exc):
                raise
            return _LEDGER_AWAY
        return {"submitted": published}

    def on_children(self, children: list[list[str]]) -> dict[str, Any]:
        """Statuses of this invocation's own children (a parent waiting for its fan-out polls this)."""
        items = []
        try:
            found = [self.runner.ledger.find_invocation(function, invocation_id)
                     for function, invocation_id in children]
        except Exception as exc:
            if not is_outage(exc):
                raise
            return _LEDGER_AWAY
        for (function, invocation_id), child in zip(children, found, strict=True):
            if child is None or child.parent_pk != self.pk:
                return {"error": {"code": "NotAChild",
                                  "message": f"{function}/{invocation_id} is not a child of this invocation"}}
            items.append({"invocationId": child.invocation_id, "function": child.function,
                          "status": child.status.value, "attempts": child.attempts,
                          "progress": child.progress_percent, "errorType": child.error_type, "error": child.error,
                          "result": None if child.result is None else json.loads(child.result)})
        return {"items": items}

    def on_tick(self) -> str | None:
        if self.runner.draining():
            return "handback"
        return self.lease.verdict()


_LEDGER_AWAY = {"error": {"code": "LedgerUnavailable", "message": "the ledger is unreachable; try again shortly"}}


def _answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A handler's request to the service, answered: a refusal as its code, message and the existing record (a
    409's), an outage as LedgerUnavailable (the handler may try again), anything else raised."""
    try:
        return call()
    except TaskServiceError as exc:
        return {"error": {"code": exc.code, "message": exc.message}, "existing": getattr(exc, "existing", None)}
    except Exception as exc:
        if not is_outage(exc):
            raise
        return _LEDGER_AWAY


class Runner:
    def __init__(self, ledger: Ledger, submitter: Submitter, *, worker_id: str,
                 lease_s: float, heartbeat_s: float, retry_base_s: float, retry_max_s: float,
                 storage_url: str = "", storage_endpoints: str = "",
                 shutting_down: Callable[[], bool] = lambda: False,
                 draining: Callable[[], bool] = lambda: False,
                 storage_events: Callable[[list[ObjectEvent]], int] | None = None,
                 executors: ExecutorSlot | None = None) -> None:
        self.ledger = ledger
        self.submitter = submitter
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.storage_url = storage_url  # handed to each attempt, which opens its own storage client
        self.storage_endpoints = storage_endpoints
        self.shutting_down = shutting_down  # true once the worker began to shut down: no new attempt starts here
        self.draining = draining  # true once the worker's drain time is up: running attempts are handed back
        self.storage_events = storage_events  # fires storage triggers for objects handlers write
        self.executors = executors  # this pool slot's warm executor; None: a fresh fork per attempt

    def run(self, pk: int) -> str:
        """Handle one doorbell; returns a word saying what happened (for the worker log and tests)."""
        if self.shutting_down():
            # A doorbell the broker had already handed to this worker before it began to shut down: pass it on.
            self.submitter.ring(pk)
            return "passed-on"
        try:
            claimed, started = self._claim(pk)
        except LedgerUnreachable:
            # The doorbell was taken off the broker and the ledger cannot say what to do with it: ring it again for
            # later rather than drop it (and if the broker is away too, the reaper finds it once the ledger is back).
            self._ring_later(pk)
            return "ledger-unreachable"
        if claimed is None:
            return "skipped"  # duplicate delivery, already running elsewhere, or already ended
        if isinstance(claimed, Invocation):
            return self._not_started(claimed)
        return self._execute(claimed, started)

    def _ring_later(self, pk: int) -> None:
        try:
            self.submitter.ring(pk, delay_s=CLAIM_PATIENCE_S)
        except Exception as exc:  # the broker refused and the ledger could not be flagged either
            if not is_outage(exc):
                raise
            log.warning("invocation %s: neither ledger nor broker reachable; the reaper's lost-doorbell pass rings "
                        "it once the ledger is back", pk)

    def _claim(self, pk: int) -> tuple[Claim | Invocation | None, float]:
        """Claim, waiting out a short ledger outage with backoff. Also returns when the claim that counted began:
        its lease runs from then, not from the first try."""
        began = [time.monotonic()]

        def claim() -> Claim | Invocation | None:
            began[0] = time.monotonic()
            return self.ledger.claim(pk, self.worker_id, self.lease_s)

        return _patiently(claim, CLAIM_PATIENCE_S, f"claim of invocation {pk}"), began[0]

    def _not_started(self, invocation: Invocation) -> str:
        if invocation.status.value in ("Enqueued", "Retrying"):
            # Too early (backoff) or at the function's concurrency limit: ring again later, keep the status. The
            # deferral is written first so that the reaper never sees a due invocation whose doorbell is in flight.
            # A delayed invocation whose doorbell came early keeps its own start time (never moved earlier).
            delay_s = 1.0
            if invocation.not_before is not None:
                delay_s = max(delay_s, (invocation.not_before - utcnow()).total_seconds())
            try:
                _patiently(lambda: self.ledger.defer(invocation.pk, delay_s), CLAIM_PATIENCE_S,
                           f"deferral of invocation {invocation.pk}")
            except LedgerUnreachable:
                self._ring_later(invocation.pk)
                return "ledger-unreachable"
            self.submitter.ring(invocation.pk, delay_s=delay_s)
            return "deferred"
        return invocation.status.value.lower()

    def _execute(self, claim: Claim, claimed_at: float) -> str:
        invocation, function = claim.invocation, claim.function
        job = Job(handler=function.handler, payload=invocation.payload, request_id=invocation.request_id,
                  invocation_id=invocation.invocation_id, function=function.name, attempt=claim.attempt,
                  timeout_s=function.timeout_s, storage_url=self.storage_url,
                  storage_endpoints=self.storage_endpoints)
        if self.executors is None:
            preload_module(function.handler)  # the fork inherits it (a warm executor's zygote preloads instead)
        lease = AttemptLease(self.ledger, invocation.pk, claim.attempt, lease_s=self.lease_s,
                             heartbeat_s=self.heartbeat_s, renewed_at=claimed_at)
        try:
            hooks = _AttemptHooks(self, claim, lease)
            outcome = run_isolated(job, hooks) if self.executors is None else self.executors.run(job, hooks)
            if lease.lost or lease.fenced:
                return "fenced" if lease.fenced else "abandoned"
            if outcome.kind not in ("succeeded", "handed_back"):
                # The invocation keeps only the latest error; the log keeps every attempt's, traceback included.
                lease.add_log(utcnow(), "ERROR", f"[taskservice] attempt {claim.attempt} ended {outcome.kind}: "
                                                 f"{outcome.error_type}: {outcome.error}")
            return self._persist_while_leased(claim, outcome, lease)
        finally:
            lease.close()

    def _persist_while_leased(self, claim: Claim, outcome: Outcome, lease: AttemptLease) -> str:
        """Write logs and outcome, retrying through an outage for as long as the lease is ours (the lease's keeper
        goes on heartbeating meanwhile); past that, the reaper hands the invocation to a new attempt."""
        failures = 0
        while True:
            if not lease.may_write:
                log.error("invocation %s: outcome of attempt %d (%s) not written: the ledger stayed unreachable "
                          "until the lease was about to lapse; it will run again", claim.invocation.pk,
                          claim.attempt, outcome.kind)
                return "abandoned"
            try:
                lease.flush(heartbeat=False)  # the outcome's own transaction ends the lease: no last heartbeat
                return self._persist(claim, outcome)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                failures += 1
                time.sleep(backoff_delay(failures, 0.25, 1.0))

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
        if outcome.kind == "handed_back":
            log.warning("invocation %s: the drain time ran out; attempt %d was killed and is handed back", pk,
                        attempt)
            moved = self.ledger.hand_back(pk, attempt, reason=f"worker {self.worker_id} draining")
            if moved is not None and moved.status is Status.RETRYING:
                self.submitter.ring(pk)
            return "handed-back"
        delay = backoff_delay(attempt, self.retry_base_s, self.retry_max_s)
        moved = self.ledger.fail(pk, attempt, error_type=outcome.error_type, error=outcome.error,
                                 max_retries=claim.max_retries, retry_delay_s=delay,
                                 retry_base=claim.invocation.retry_base)
        if moved is not None and moved.status is Status.RETRYING:
            self.submitter.ring(pk, delay_s=delay)
            return "retrying"
        return "failed"


class LedgerUnreachable(Exception):
    """The ledger stayed unreachable for as long as the caller was willing to wait."""


T = TypeVar("T")


def _patiently(call: Callable[[], T], patience_s: float, what: str) -> T:
    """Run `call`, retrying with backoff while the ledger is unreachable, for up to `patience_s`."""
    deadline = time.monotonic() + patience_s
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            failures += 1
            if time.monotonic() >= deadline:
                log.warning("%s: ledger unreachable for %.0fs (%s)", what, patience_s, type(exc).__name__)
                raise LedgerUnreachable(what) from exc
            time.sleep(backoff_delay(failures, 0.1, 1.0))
