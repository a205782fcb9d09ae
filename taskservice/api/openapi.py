"""The OpenAPI 3.1 document of the API as it behaves, rendered from the models the server validates and answers with.

Request bodies come from taskservice/specs.py and schemas.py, query parameters from schemas.Query subclasses,
answers from schemas.Answer subclasses; what is written here is only which operation uses which model and which
status codes and headers it can answer with. tests/integration/test_openapi_contract.py fuzzes a live server
against this document with every schemathesis check, so a status, header or field that is not here fails a test.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from taskservice.api import flow_schemas, schemas
from taskservice.api.dead_letters import DEAD_LETTER_ID_MAX
from taskservice.specs import (
    FUNCTION_NAME,
    INVOCATION_ID,
    FlowConfig,
    FunctionConfig,
    ReplayMany,
    ReplayOne,
    TriggerConfig,
)
from taskservice.trigger_specs import QueueConfig, StorageConfig, TimerConfig
from taskservice.version import __version__

_REF = "#/components/schemas/{model}"
_MEANING = {
    400: "malformed JSON, an empty body where one is needed, or a bad name, id, query parameter or option",
    401: "no token, or an unknown or revoked one (only when auth is on, i.e. outside `taskservice dev`)",
    403: "a read-only token on a call that changes something",
    404: "unknown function, invocation, trigger, dead letter, flow or execution",
    409: "conflict: the invocation id or execution name is taken, or the state does not allow this",
    413: "body over the limit",
    415: "Content-Type is not JSON",
    422: "invalid function, trigger, replay or flow config (details name each field or step path)",
    503: "the ledger or the broker is unavailable; try again",
}
_HEADERS: dict[str, Any] = {
    "WWW-Authenticate": {"description": "the Bearer challenge", "required": True, "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before trying again",
                    "required": True, "schema": {"type": "integer", "minimum": 0}},
    "Location": {"description": "where the new invocation can be read", "required": True,
                 "schema": {"type": "string"}},
}
_INPUTS: tuple[type[BaseModel], ...] = (FunctionConfig, FlowConfig, TriggerConfig, TimerConfig, StorageConfig,
                                        QueueConfig, ReplayOne, ReplayMany, *schemas.REQUESTS)


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model if isinstance(model, str) else model.__name__)}


def _json(model: type[BaseModel], description: str, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(status: int, meaning: str | None = None) -> dict[str, Any]:
    headers = {401: {"WWW-Authenticate": _HEADERS["WWW-Authenticate"]},
               503: {"Retry-After": _HEADERS["Retry-After"]}}.get(status, {})
    return _json(schemas.Error, meaning or _MEANING[status], **headers)


def _operation(summary: str, answers: dict[int, dict[str, Any]], errors: tuple[int, ...], *, writes: bool = False,
               body: tuple[type[BaseModel], bool] | None = None, query: type[schemas.Query] | None = None,
               description: str | None = None, **extra: Any) -> dict[str, Any]:
    """One /v1 operation: its answers, the errors it can give, plus 401 and 503 on every one and 403 on writes."""
    responses = {str(status): answer for status, answer in answers.items()}
    for status in sorted({*errors, 401, 503, *((403,) if writes else ())}):
        responses.setdefault(str(status), _error(status))
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if description:
        operation["description"] = description
    if body is not None:
        model, required = body
        operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": _ref(model)}}}
    if query is not None:
        operation["parameters"] = _query_parameters(query)
    return operation


def _query_parameters(model: type[schemas.Query]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    parameters = []
    for name, prop in schema["properties"].items():
        prop.pop("title", None)
        parameter = {"name": name, "in": "query", "required": False, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


_NAME = _path_parameter("name", {"type": "string", "pattern": FUNCTION_NAME.pattern}, "function name")
_TRIGGER = _path_parameter("name", {"type": "string", "pattern": FUNCTION_NAME.pattern}, "trigger name")
_ID = _path_parameter("invocation_id", {"type": "string", "pattern": INVOCATION_ID.pattern}, "invocation id")
_FLOW = _path_parameter("name", {"type": "string", "pattern": FUNCTION_NAME.pattern}, "flow name")
_EXECUTION = _path_parameter("execution", {"type": "string", "pattern": INVOCATION_ID.pattern}, "execution name")
_DEAD_LETTER = _path_parameter("dead_letter_id", {"type": "integer", "minimum": 0, "maximum": DEAD_LETTER_ID_MAX},
                               "dead letter id (GET /v1/dead-letters)")


def _component_schemas() -> dict[str, Any]:
    """Every model's JSON schema under components/schemas: inputs as validated, answers as serialized."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in _INPUTS),
        *((m, "serialization") for m in schemas.ANSWERS), *((m, "serialization") for m in flow_schemas.ANSWERS)]
    _, top = models_json_schema(models, ref_template=_REF)
    return dict(top.get("$defs", {}))


def openapi_document(max_payload_bytes: int) -> dict[str, Any]:
    """Built per request, because the payload limit is the running server's setting."""
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Health of the API and its ledger", "security": [], "responses": {
            "200": _json(schemas.Health, "healthy"), "503": _json(schemas.Health, "the ledger is unavailable")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics read from the ledger at scrape time", "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/v1/functions": {"get": _operation("List functions", {200: _json(schemas.FunctionList, "OK")}, ())},
        "/v1/functions/{name}": {
            "parameters": [_NAME],
            "put": _operation("Register or update a function", {
                200: _json(schemas.Function, "updated"), 201: _json(schemas.Function, "created")},
                (400, 413, 415, 422), writes=True, body=(FunctionConfig, True)),
            "get": _operation("Read a function", {200: _json(schemas.Function, "OK")}, (400, 404)),
            "delete": _operation("Delete a function; its waiting invocations end Invalid",
                                 {204: {"description": "deleted"}}, (400, 404), writes=True),
        },
        "/v1/functions/{name}/invocations": {"parameters": [_NAME], "post": _operation(
            "Submit an asynchronous invocation",
            {202: _json(schemas.Submitted, "accepted", Location=_HEADERS["Location"]),
             409: _error(409, "the id is taken: the body holds the invocation that has it")},
            (400, 404, 413, 415), writes=True,
            description=f"The body is the payload: any JSON up to {max_payload_bytes} bytes (empty = null).",
            parameters=[{"name": "X-Invocation-Id", "in": "header", "required": False,
                         "description": "your id for the invocation (default: generated); unique per function",
                         "schema": {"type": "string", "pattern": INVOCATION_ID.pattern}}],
            requestBody={"required": False, "content": {"application/json": {"schema": {}}}})},
        "/v1/functions/{name}/invocations:batch": {"parameters": [_NAME], "post": _operation(
            "Submit up to 1,000 asynchronous invocations at once",
            {200: _json(schemas.BatchResult, "processed: each item's own status (202/409/400/413) is in the answer")},
            (400, 404, 413, 415), writes=True, body=(schemas.BatchSubmission, True),
            description=("All items are written in one ledger transaction and rung in one publish batch. Each item is "
                         "judged on its own: valid items are accepted (202) even when others are refused, an id "
                         "already taken — in the ledger or by an earlier item of the same batch — gets 409 with the "
                         "holder's request id and status, a bad id or payload 400, a payload over "
                         f"{max_payload_bytes} bytes 413. What concerns the request as a whole refuses all of it and "
                         "writes nothing: malformed JSON or a malformed item (400, naming its index), more than "
                         "1,000 items or a body over the batch limit (413), an unknown function (404)."))},
        "/v1/functions/{name}/invocations/{invocation_id}": {"parameters": [_NAME, _ID], "get": _operation(
            "Read one invocation with its transitions, deliveries and fan-out family",
            {200: _json(schemas.Invocation, "OK")}, (400, 404))},
        "/v1/functions/{name}/invocations/{invocation_id}/stop": {"parameters": [_NAME, _ID], "post": _operation(
            "Stop: a waiting invocation ends Stopped at once, a running one goes Stopping → Stopped",
            {202: _json(schemas.InvocationState, "stop recorded"), 409: _error(409, "it has already ended")},
            (400, 404), writes=True)},
        "/v1/functions/{name}/invocations/{invocation_id}/retry": {"parameters": [_NAME, _ID], "post": _operation(
            "Re-run an ended invocation under the same id as a new attempt",
            {202: _json(schemas.InvocationState, "enqueued again"),
             409: _error(409, "not ended, or Succeeded without includeSucceeded")},
            (400, 404, 413, 415), writes=True, body=(schemas.RetryOptions, False),
            description="Failed, Stopped, Expired and Invalid invocations; Succeeded ones only with "
                        '{"includeSucceeded": true}. The history keeps every attempt with its logs.')},
        "/v1/invocations/stop": {"post": _operation(
            "Stop every invocation the selection picks that has not ended",
            {200: _json(schemas.BulkResult, "what was stopped and what was refused")}, (400, 413, 415),
            writes=True, body=(schemas.BulkSelection, True))},
        "/v1/invocations/retry": {"post": _operation(
            "Retry every ended invocation the selection picks",
            {200: _json(schemas.BulkResult, "what was retried and what was refused")}, (400, 413, 415),
            writes=True, body=(schemas.BulkRetrySelection, True))},
        "/v1/functions/{name}/invocations/{invocation_id}/logs": {"parameters": [_NAME, _ID], "get": _operation(
            "The invocation's log lines, oldest first", {200: _json(schemas.Logs, "OK")}, (400, 404),
            query=schemas.LogsQuery)},
        "/v1/invocations": {"get": _operation(
            "List invocations, newest first, with keyset pagination", {200: _json(schemas.InvocationPage, "OK")},
            (400,), query=schemas.InvocationQuery)},
        "/v1/dead-letters": {"get": _operation(
            "Failure records, newest first", {200: _json(schemas.DeadLetterPage, "OK")}, (400,),
            query=schemas.DeadLetterQuery)},
        "/v1/dead-letters/{dead_letter_id}/replay": {"parameters": [_DEAD_LETTER], "post": _operation(
            "Replay one failure record, optionally with an edited payload",
            {202: _json(schemas.Replayed, "replay submitted"),
             409: _error(409, "replayed before (the body holds that replay's invocation); force replays again")},
            (400, 404, 413, 415, 422), writes=True, body=(ReplayOne, False))},
        "/v1/dead-letters/replay": {"post": _operation(
            "Replay failure records by filter, or external Function Compute records",
            {200: _json(schemas.ReplayOutcomes, "one outcome per record, never all-or-nothing")},
            (400, 404, 413, 415, 422), writes=True, body=(ReplayMany, True))},
        "/v1/storage-events": {"post": _operation(
            "MinIO bucket notifications (webhook target): submit the storage triggers they match",
            {202: _json(schemas.StorageEventsResult, "accepted; events no trigger watches are counted as ignored")},
            (400, 413, 415, 422), writes=True, body=(schemas.StorageNotification, True),
            description="Every record is checked before anything is written: an unsafe key (`..`, control "
                        "characters) or a record that is not an S3 event record is a 422 naming the field. A "
                        "redelivered notification is the same invocation (ids from trigger, bucket, key, eTag).")},
        "/v1/triggers": {"get": _operation("List triggers of every kind with their lag or status",
                                           {200: _json(schemas.TriggerList, "OK")}, ())},
        "/v1/triggers/{name}": {
            "parameters": [_TRIGGER],
            "put": _operation("Create or replace a trigger: kafka (default), timer, storage or queue", {
                200: _json(schemas.AnyTrigger, "replaced"), 201: _json(schemas.AnyTrigger, "created")},
                (400, 404, 413, 415, 422), writes=True, body=(schemas.AnyTriggerConfig, True)),
            "get": _operation("Read a trigger and its lag or status", {200: _json(schemas.AnyTrigger, "OK")},
                              (400, 404)),
            "delete": _operation("Delete a trigger; ingest processes stop consuming for it within seconds",
                                 {204: {"description": "deleted"}}, (400, 404), writes=True),
        },
    }
    paths.update(_flow_paths())
    bearer = {"type": "http", "scheme": "bearer",
              "description": "`taskservice tokens create NAME [--role read-only]`; not needed in `taskservice dev`. "
                             "A read-only token gets 403 on every call that changes something."}
    return {"openapi": "3.1.0", "info": {"title": "taskservice", "version": __version__},
            "security": [{"bearer": []}], "paths": paths,
            "components": {"schemas": _component_schemas(), "securitySchemes": {"bearer": bearer}}}


def _flow_paths() -> dict[str, Any]:
    """Flows and executions (design §7)."""
    started = _json(flow_schemas.ExecutionStarted, "accepted")
    return {
        "/v1/flows": {"get": _operation("List flows with their executions per status",
                                        {200: _json(flow_schemas.FlowList, "OK")}, ())},
        "/v1/flows/{name}": {
            "parameters": [_FLOW],
            "put": _operation("Deploy or update a flow", {
                200: _json(flow_schemas.Flow, "updated"), 201: _json(flow_schemas.Flow, "created")},
                (400, 413, 415, 422), writes=True, body=(FlowConfig, True),
                description="`definition` is FDL (version v1, type flow, steps) as YAML text or a JSON object. "
                            "A definition that cannot run (unknown step type or key, goto to a missing step, "
                            "duplicate names, a loop that can never end, a bad mapping path or condition, a "
                            "limit exceeded) is a 422 whose message starts with the step path."),
            "get": _operation("Read a flow", {200: _json(flow_schemas.Flow, "OK")}, (400, 404)),
            "delete": _operation("Delete a flow; executions already started run to their end",
                                 {204: {"description": "deleted"}}, (400, 404), writes=True),
        },
        "/v1/flows/{name}/executions": {"parameters": [_FLOW], "post": _operation(
            "Start an execution", {202: _json(flow_schemas.ExecutionStarted, "started",
                                              Location=_HEADERS["Location"]),
                                   409: _error(409, "the name is taken: the body holds that execution")},
            (400, 404, 413, 415), writes=True,
            description="The body is the execution's input: a JSON object up to 256 KiB (empty = {}).",
            parameters=[{"name": "X-Execution-Name", "in": "header", "required": False,
                         "description": "your name for the execution (default: generated); unique per flow",
                         "schema": {"type": "string", "pattern": INVOCATION_ID.pattern}}],
            requestBody={"required": False, "content": {"application/json": {"schema": {"type": "object"}}}})},
        "/v1/flows/{name}/executions/{execution}": {"parameters": [_FLOW, _EXECUTION], "get": _operation(
            "Read an execution with one entry per step run", {200: _json(flow_schemas.Execution, "OK")},
            (400, 404))},
        "/v1/flows/{name}/executions/{execution}/history": {"parameters": [_FLOW, _EXECUTION], "get": _operation(
            "The execution's events, oldest first", {200: _json(flow_schemas.History, "OK")}, (400, 404),
            query=flow_schemas.HistoryQuery)},
        "/v1/flows/{name}/executions/{execution}/stop": {"parameters": [_FLOW, _EXECUTION], "post": _operation(
            "Stop: running step handlers are killed, the execution goes Stopping → Stopped",
            {202: started, 409: _error(409, "it has already ended")}, (400, 404), writes=True)},
        "/v1/flows/{name}/executions/{execution}/redrive": {"parameters": [_FLOW, _EXECUTION], "post": _operation(
            "Resume a Failed, Stopped or TimedOut execution at the steps that did not succeed",
            {202: started, 409: _error(409, "it is running or Succeeded")}, (400, 404), writes=True)},
        "/v1/executions": {"get": _operation(
            "List executions, newest first, with keyset pagination", {200: _json(flow_schemas.ExecutionPage, "OK")},
            (400,), query=flow_schemas.ExecutionQuery)},
    }
