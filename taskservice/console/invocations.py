"""The invocations list, the invocation page (with its live view) and the Stop and Retry actions."""
from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from taskservice.api.requests import int_arg
from taskservice.console.auth import require_change
from taskservice.console.blueprint import console, services, stats
from taskservice.console.confirm import ask_first
from taskservice.console.formatting import isotime
from taskservice.console.params import PAGE_SIZES, WINDOWS, list_query, list_url, toggle_status
from taskservice.errors import Conflict, ExecutionNotFound, IllegalTransition
from taskservice.ledger.flows import Execution
from taskservice.ledger.records import Invocation
from taskservice.ledger.states import TERMINAL, Status
from taskservice.specs import check_function_name, check_invocation_id

COUNT_CAP = 10_000
#: The invocation page shows at most this many log lines at first; the live view adds the rest as they come.
PAGE_LOG_LINES = 10_000


@console.get("/")
def invocations() -> str:
    query = list_query(request.args)
    page = stats().page(query.flt, limit=query.limit, older=query.older, newer=query.newer)
    counts = stats().status_counts(query.flt, cap=COUNT_CAP)
    chosen = tuple(s.value for s in query.flt.statuses)
    return render_template("invocations.html", page=page, query=query, counts=counts, cap=COUNT_CAP,
                           chosen=chosen, functions=[f.name for f in services().ledger.list_functions()],
                           windows=list(WINDOWS), page_sizes=PAGE_SIZES, list_url=list_url,
                           toggle_status=toggle_status, filtered=request.args.keys() - {"limit"} != set())


def _load(function: str, invocation_id: str) -> Invocation:
    return services().ledger.get_invocation(check_function_name(function), check_invocation_id(invocation_id))


@console.get("/invocations/<function>/<invocation_id>")
def invocation(function: str, invocation_id: str) -> str:
    inv = _load(function, invocation_id)
    ledger = services().ledger
    transitions = ledger.transitions(inv.pk)
    attempts: dict[int, list[Any]] = {}
    for t in transitions:
        attempts.setdefault(t.attempt, []).append(t)
    parent = None if inv.parent_pk is None else ledger.get_by_pk(inv.parent_pk)
    logs = stats().logs_after(inv.pk, 0, limit=PAGE_LOG_LINES)
    return render_template("invocation.html", inv=inv, attempts=attempts, parent=parent, execution=_execution(inv),
                           children=ledger.children(inv.pk), deliveries=services().outbox.for_invocation(inv.pk),
                           logs=logs, last_log_id=logs[-1].id if logs else 0,
                           duration_s=_duration(inv), terminal=inv.status in TERMINAL)


def _execution(inv: Invocation) -> Execution | None:
    """The flow execution a step invocation belongs to, so its page leads back to the execution."""
    if inv.execution_pk is None:
        return None
    try:
        return services().flows.get_execution_by_pk(inv.execution_pk)
    except ExecutionNotFound:
        return None


def _duration(inv: Invocation) -> float | None:
    if inv.started_at is None or inv.finished_at is None:
        return None
    return (inv.finished_at - inv.started_at).total_seconds()


@console.get("/invocations/<function>/<invocation_id>/live")
def live(function: str, invocation_id: str) -> Response:
    """What the invocation page polls: status, progress and the log lines after `after` (a log line id)."""
    inv = _load(function, invocation_id)
    after = int_arg(request.args, "after", 0, 0, 2**62)
    lines = stats().logs_after(inv.pk, after, limit=1000)
    return jsonify({"status": inv.status.value, "terminal": inv.status in TERMINAL, "attempts": inv.attempts,
                    "progress": {"percent": inv.progress_percent, "message": inv.progress_message},
                    "logs": [{"id": line.id, "attempt": line.attempt, "at": isotime(line.at), "level": line.level,
                              "message": line.message} for line in lines],
                    "lastLogId": lines[-1].id if lines else after})


def _confirmed(action: str, inv: Invocation, question: str) -> str | None:
    target = url_for(f"console.{action}", function=inv.function, invocation_id=inv.invocation_id)
    return ask_first(action.capitalize(), question, target, _page_of(inv))


def _page_of(inv: Invocation) -> str:
    return url_for("console.invocation", function=inv.function, invocation_id=inv.invocation_id)


@console.post("/invocations/<function>/<invocation_id>/stop")
def stop(function: str, invocation_id: str) -> Response | str:
    require_change()
    inv = _load(function, invocation_id)
    asked = _confirmed("stop", inv, f"Stop {inv.function} / {inv.invocation_id}? Its handler and every process "
                                    "it started are killed, and its fan-out children are stopped too.")
    if asked is not None:
        return asked
    if inv.status in TERMINAL or inv.status is Status.STOPPING:
        flash(f"This invocation has already ended ({inv.status.value}); there is nothing to stop."
              if inv.status in TERMINAL else "This invocation is already stopping.", "error")
        return redirect(_page_of(inv), code=303)
    try:
        stopped = services().control.stop(inv)
    except (Conflict, IllegalTransition) as exc:
        flash(f"Could not stop it: {exc.message}", "error")
    else:
        flash("Stopped." if stopped.status is Status.STOPPED else
              "Stop requested: the worker is killing the handler and its processes.", "ok")
    return redirect(_page_of(inv), code=303)


@console.post("/invocations/<function>/<invocation_id>/retry")
def retry(function: str, invocation_id: str) -> Response | str:
    require_change()
    inv = _load(function, invocation_id)
    again = inv.status is Status.SUCCEEDED
    asked = _confirmed("retry", inv, f"Run {inv.function} / {inv.invocation_id} again as a new attempt?"
                       + (" It succeeded last time." if again else ""))
    if asked is not None:
        return asked
    if inv.status not in TERMINAL:
        flash(f"Only an ended invocation can be retried; this one is {inv.status.value}.", "error")
        return redirect(_page_of(inv), code=303)
    try:
        services().control.retry(inv, include_succeeded=again)
    except (Conflict, IllegalTransition) as exc:
        flash(f"Could not retry it: {exc.message}", "error")
    else:
        flash("Retried: a new attempt is on its way.", "ok")
    return redirect(_page_of(inv), code=303)
