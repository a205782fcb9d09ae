"""The flows list, one flow's page (its definition drawn, its source) and the executions list."""
from __future__ import annotations

from functools import partial

from flask import render_template, request, url_for

from taskservice.console.blueprint import console, services
from taskservice.console.flow_graph import Progress, render
from taskservice.console.flow_params import execution_query
from taskservice.console.params import PAGE_SIZES, WINDOWS, toggle_status, url_with
from taskservice.flowdef import parse_definition
from taskservice.ledger.flows import EXECUTION_STATUSES, ExecutionFilter
from taskservice.specs import check_function_name

#: The flow page lists its most recent executions; the executions list has the rest.
RECENT = 10


def _invocation_url(function: str, invocation_id: str) -> str:
    return url_for("console.invocation", function=function, invocation_id=invocation_id)


@console.get("/flows")
def flows() -> str:
    store = services().flows
    return render_template("flows.html", flows=store.all(), counts=store.execution_counts(),
                           statuses=EXECUTION_STATUSES)


@console.get("/flows/<name>")
def flow(name: str) -> str:
    store = services().flows
    found = store.get(check_function_name(name))
    graph = render(parse_definition(found.definition), Progress(), _invocation_url,
                   label=f"Steps of flow {found.name}")
    recent, _ = store.list_executions(ExecutionFilter(flow=found.name), limit=RECENT)
    return render_template("flow.html", flow=found, graph=graph, recent=recent, statuses=EXECUTION_STATUSES,
                           counts=store.execution_counts().get(found.name, {}))


@console.get("/executions")
def executions() -> str:
    query = execution_query(request.args)
    items, older = services().flows.list_executions(query.flt, limit=query.limit, cursor=query.older)
    return render_template("executions.html", items=items, older=older, query=query, statuses=EXECUTION_STATUSES,
                           flows=[f.name for f in services().flows.all()], windows=list(WINDOWS),
                           page_sizes=PAGE_SIZES, list_url=partial(url_with, "console.executions"),
                           toggle_status=toggle_status, filtered=request.args.keys() - {"limit"} != set())
