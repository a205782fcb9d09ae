"""One execution's page — its step graph, foreach iterations, input and output, history — its live view, and the
Stop and Redrive actions.

The live view is the invocation page's (poll a small endpoint while the execution has not ended) with one
difference: the endpoint answers the page's changing parts as HTML rendered by the same macros as the page, and
the new history rows, so the page swaps those parts in place instead of reloading.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, get_template_attribute, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from taskservice.api.requests import int_arg
from taskservice.console.auth import require_change
from taskservice.console.blueprint import console, services
from taskservice.console.confirm import ask_first
from taskservice.console.flow_graph import NOT_RUN, IterationCount, Progress, iterations_anchor, render
from taskservice.errors import ExecutionStateConflict
from taskservice.flowdef import FlowDefinition, StepType, parse_definition
from taskservice.ledger.flows import EXECUTION_ENDED, REDRIVABLE, RUNNING, Execution, FlowEvent, StepRun
from taskservice.specs import check_execution_name, check_function_name

#: The page shows at most this many history events at first (an execution may have 25,000); the API has them all.
PAGE_EVENTS = 2000
#: Iterations listed per foreach; beyond it the ones that did not succeed come first.
ITERATION_ROWS = 200
#: The parts of the page the live view replaces: element id → (macro in execution_parts.html, its arguments).
LIVE_PARTS = {"status-badge": ("status_badge", ("ex",)), "execution-actions": ("actions", ("ex", "can_stop",
                                                                                           "can_redrive")),
              "execution-facts": ("facts", ("ex", "duration_s")), "execution-error": ("error", ("ex",)),
              "graph": ("graph", ("graph",)), "iterations": ("iterations", ("iterations",)),
              "execution-io": ("io", ("ex", "terminal"))}


@dataclass(frozen=True)
class Iteration:
    scope: str
    status: str
    steps: list[StepRun]


@dataclass(frozen=True)
class IterationList:
    """The iterations of one foreach of the definition (of every run of it, when it is nested in another)."""

    template: str
    anchor: str
    name: str
    count: IterationCount
    rows: list[Iteration]
    total: int


def _iteration_lists(definition: FlowDefinition, progress: Progress, runs: list[StepRun],
                     frames: dict[str, str]) -> list[IterationList]:
    children: dict[str, list[StepRun]] = {}
    for run in runs:
        if "/" in run.path:
            children.setdefault(run.path.rsplit("/", 1)[0], []).append(run)
    lists = []
    for template, foreach_runs in progress.runs.items():
        if foreach_runs[0].type != StepType.FOREACH.value:
            continue
        rows = [Iteration(scope, frames.get(scope, NOT_RUN), children.get(scope, []))
                for run in foreach_runs for scope in (f"{run.path}/{k}" for k in range(run.items or 0))]
        shown = rows
        if len(rows) > ITERATION_ROWS:
            first = sorted(range(len(rows)), key=lambda i: (rows[i].status == "Succeeded", i))[:ITERATION_ROWS]
            shown = [rows[i] for i in sorted(first)]
        lists.append(IterationList(template, iterations_anchor(template), template.rsplit("/", 1)[-1],
                                   progress.iterations[template], shown, len(rows)))
    return lists


def _load(flow: str, name: str) -> Execution:
    return services().flows.get_execution(check_function_name(flow), check_execution_name(name))


def _invocation_url(function: str, invocation_id: str) -> str:
    return url_for("console.invocation", function=function, invocation_id=invocation_id)


def _view(ex: Execution) -> dict[str, Any]:
    """Everything the page's changing parts are drawn from."""
    store = services().flows
    definition = parse_definition(ex.definition)
    runs, frames = store.steps(ex.pk), store.frame_statuses(ex.pk)
    progress = Progress.of(definition, runs, frames)
    duration = None if ex.finished_at is None else (ex.finished_at - ex.started_at).total_seconds()
    return {"ex": ex, "terminal": ex.status in EXECUTION_ENDED, "can_stop": ex.status == RUNNING,
            "can_redrive": ex.status in REDRIVABLE, "duration_s": duration,
            "graph": render(definition, progress, _invocation_url, label=f"Steps of execution {ex.name}"),
            "iterations": _iteration_lists(definition, progress, runs, frames)}


def _events(ex: Execution, after: int, limit: int) -> list[FlowEvent]:
    return services().flows.history(ex.pk, after=after, limit=limit)


@console.get("/flows/<flow>/executions/<name>")
def execution(flow: str, name: str) -> str:
    ex = _load(flow, name)
    events = _events(ex, 0, PAGE_EVENTS)
    return render_template("execution.html", **_view(ex), events=events, cut=len(events) >= PAGE_EVENTS,
                           last_event_id=events[-1].id if events else 0)


@console.get("/flows/<flow>/executions/<name>/live")
def execution_live(flow: str, name: str) -> Response:
    """What the execution page polls: its changing parts as HTML, and the history events after `after`."""
    ex = _load(flow, name)
    after = int_arg(request.args, "after", 0, 0, 2**62)
    # The events first, the step runs after them: an event and its step run commit together, so the parts drawn
    # are never older than the events sent with them (the other order could show WaitStarted on a box not yet
    # Waiting).
    events = _events(ex, after, 1000)
    view = _view(ex)
    parts = {element: str(get_template_attribute("execution_parts.html", macro)(*(view[a] for a in args)))
             for element, (macro, args) in LIVE_PARTS.items()}
    row = get_template_attribute("execution_parts.html", "event_row")
    return jsonify({"status": ex.status, "terminal": view["terminal"], "parts": parts,
                    "events": [str(row(e)) for e in events],
                    "lastEventId": events[-1].id if events else after})


def _page_of(ex: Execution) -> str:
    return url_for("console.execution", flow=ex.flow, name=ex.name)


def _confirmed(action: str, ex: Execution, question: str) -> str | None:
    target = url_for(f"console.execution_{action}", flow=ex.flow, name=ex.name)
    return ask_first(action.capitalize(), question, target, _page_of(ex))


@console.post("/flows/<flow>/executions/<name>/stop")
def execution_stop(flow: str, name: str) -> Response | str:
    require_change()
    ex = _load(flow, name)
    asked = _confirmed("stop", ex, f"Stop {ex.flow} / {ex.name}? Its running step handlers and every process they "
                                   "started are killed; no further step starts.")
    if asked is not None:
        return asked
    if ex.status != RUNNING:
        flash(f"This execution has already ended ({ex.status}); there is nothing to stop."
              if ex.status in EXECUTION_ENDED else "This execution is already stopping.", "error")
        return redirect(_page_of(ex), code=303)
    try:
        services().flows.request_stop(ex)
    except ExecutionStateConflict as exc:  # it ended between the read and the stop
        flash(f"Could not stop it: {exc.message}", "error")
    else:
        flash("Stop requested: running steps are being stopped, then the execution ends Stopped.", "ok")
    return redirect(_page_of(ex), code=303)


@console.post("/flows/<flow>/executions/<name>/redrive")
def execution_redrive(flow: str, name: str) -> Response | str:
    require_change()
    ex = _load(flow, name)
    asked = _confirmed("redrive", ex, f"Redrive {ex.flow} / {ex.name}? It resumes at the steps that did not "
                                      "succeed; succeeded steps and foreach iterations keep their output.")
    if asked is not None:
        return asked
    if ex.status not in REDRIVABLE:
        flash(f"Only a Failed, Stopped or TimedOut execution can be redriven; this one is {ex.status}.", "error")
        return redirect(_page_of(ex), code=303)
    try:
        services().flows.redrive(ex)
    except ExecutionStateConflict as exc:
        flash(f"Could not redrive it: {exc.message}", "error")
    else:
        flash("Redriven: the steps that did not succeed run again.", "ok")
    return redirect(_page_of(ex), code=303)
