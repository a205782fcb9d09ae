"""Flows and their executions (design §7): deploy, start, read, stop, redrive. The engine does the running."""
from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api import flow_schemas
from taskservice.api.requests import json_body
from taskservice.errors import InvalidQuery
from taskservice.flowdef import parse_definition
from taskservice.flowdef.limits import MAX_STEP_IO_BYTES
from taskservice.ledger.flows import Execution, Flow
from taskservice.specs import FlowConfig, check_execution_name, check_function_name
from taskservice.submission import encode_payload

flows_api = Blueprint("flows", __name__, url_prefix="/v1")
#: A definition is at most 256 KiB of text; the envelope adds a little.
CONFIG_MAX_BYTES = 300 * 1024


def flow_view(flow: Flow, counts: dict[str, int]) -> dict[str, Any]:
    return flow_schemas.Flow.model_validate({
        "name": flow.name, "description": flow.description, "on_success": flow.on_success,
        "on_failure": flow.on_failure, "definition": flow.definition, "source": flow.source,
        "createdAt": flow.created_at, "updatedAt": flow.updated_at, "executions": counts}).dump()


def _summary_fields(e: Execution) -> dict[str, Any]:
    duration = None if e.finished_at is None else (e.finished_at - e.started_at).total_seconds() * 1000
    return {"executionName": e.name, "flow": e.flow, "requestId": e.request_id, "status": e.status,
            "error": e.error, "errorType": e.error_type, "startedAt": e.started_at, "finishedAt": e.finished_at,
            "durationMs": duration, "redrives": e.redrives}


def execution_view(services: Any, e: Execution) -> dict[str, Any]:
    steps = [{"path": s.path, "type": s.type, "status": s.status, "visit": s.visit, "attempts": s.attempts,
              "items": s.items, "input": s.input, "output": s.output, "error": s.error, "errorType": s.error_type,
              "enteredAt": s.entered_at, "endedAt": s.ended_at,
              "invocation": None if s.invocation_id is None
              else {"function": s.function, "invocationId": s.invocation_id}}
             for s in services.flows.steps(e.pk)]
    return flow_schemas.Execution.model_validate({**_summary_fields(e), "input": e.input, "output": e.output,
                                                  "steps": steps}).dump()


def started_view(e: Execution) -> dict[str, Any]:
    return flow_schemas.ExecutionStarted.model_validate({"executionName": e.name, "flow": e.flow,
                                                         "requestId": e.request_id, "status": e.status}).dump()


def _execution(services: Any, flow: str, name: str) -> Execution:
    """The execution the path names: 400 for a malformed flow or execution name, 404 for an unknown one."""
    return services.flows.get_execution(check_function_name(flow), check_execution_name(name))


@flows_api.put("/flows/<name>")
def put_flow(name: str) -> tuple[Response, int]:
    """Validated whole before anything is written: a definition that cannot run is a 422 naming the step."""
    services = current_app.extensions["taskservice"]
    check_function_name(name)
    config = FlowConfig.parse(json_body(request, max_bytes=CONFIG_MAX_BYTES))
    source = config.definition
    definition = parse_definition(source)
    text = source if isinstance(source, str) else encode_payload(source, CONFIG_MAX_BYTES)
    flow, created = services.flows.put(name, source=text, definition=definition.to_json(),
                                       description=config.description, on_success=config.on_success,
                                       on_failure=config.on_failure)
    return jsonify(flow_view(flow, {})), 201 if created else 200


@flows_api.get("/flows")
def list_flows() -> Response:
    services = current_app.extensions["taskservice"]
    counts = services.flows.execution_counts()
    return jsonify(flow_schemas.FlowList.model_validate(
        {"items": [flow_view(f, counts.get(f.name, {})) for f in services.flows.all()]}).dump())


@flows_api.get("/flows/<name>")
def get_flow(name: str) -> Response:
    services = current_app.extensions["taskservice"]
    flow = services.flows.get(check_function_name(name))
    return jsonify(flow_view(flow, services.flows.execution_counts().get(flow.name, {})))


@flows_api.delete("/flows/<name>")
def delete_flow(name: str) -> tuple[str, int]:
    current_app.extensions["taskservice"].flows.delete(check_function_name(name))
    return "", 204


@flows_api.post("/flows/<name>/executions")
def start_execution(name: str) -> tuple[Response, int]:
    """The body is the execution's input (a JSON object, empty = {}); `X-Execution-Name` names it (default:
    generated), and a taken name is a 409 carrying the execution that has it."""
    services = current_app.extensions["taskservice"]
    flow_name = check_function_name(name)
    execution_name = request.headers.get("X-Execution-Name")
    if execution_name is None:
        execution_name = f"exec_{uuid.uuid4().hex}"
    else:
        check_execution_name(execution_name)
    payload = json_body(request, max_bytes=MAX_STEP_IO_BYTES, allow_empty=True, empty={})
    if not isinstance(payload, dict):
        raise InvalidQuery("an execution's input must be a JSON object (its state starts as this object)")
    execution = services.flows.start_named(flow_name, execution_name, encode_payload(payload, MAX_STEP_IO_BYTES))
    response = jsonify(started_view(execution))
    response.headers["Location"] = f"/v1/flows/{execution.flow}/executions/{execution.name}"
    return response, 202


@flows_api.get("/flows/<name>/executions/<execution>")
def get_execution(name: str, execution: str) -> Response:
    services = current_app.extensions["taskservice"]
    found = _execution(services, name, execution)
    return jsonify(execution_view(services, found))


@flows_api.get("/flows/<name>/executions/<execution>/history")
def get_history(name: str, execution: str) -> Response:
    services = current_app.extensions["taskservice"]
    query = flow_schemas.HistoryQuery.parse(request.args)
    found = _execution(services, name, execution)
    events = services.flows.history(found.pk, after=query.after, limit=query.limit)
    return jsonify(flow_schemas.History.model_validate({
        "items": [{"id": e.id, "at": e.at, "type": e.type, "path": e.path, "detail": e.detail} for e in events],
        "last": events[-1].id if events else query.after}).dump())


@flows_api.post("/flows/<name>/executions/<execution>/stop")
def stop_execution(name: str, execution: str) -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    found = _execution(services, name, execution)
    return jsonify(started_view(services.flows.request_stop(found))), 202


@flows_api.post("/flows/<name>/executions/<execution>/redrive")
def redrive_execution(name: str, execution: str) -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    found = _execution(services, name, execution)
    return jsonify(started_view(services.flows.redrive(found))), 202


@flows_api.get("/executions")
def list_executions() -> Response:
    services = current_app.extensions["taskservice"]
    query = flow_schemas.ExecutionQuery.parse(request.args)
    items, cursor = services.flows.list_executions(query.filter(), limit=query.limit, cursor=query.cursor)
    return jsonify(flow_schemas.ExecutionPage.model_validate(
        {"items": [_summary_fields(e) for e in items], "next_cursor": cursor}).dump())
