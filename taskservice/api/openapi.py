"""The OpenAPI 3.1 document of the API as it behaves; tests/integration checks every route is described."""
from __future__ import annotations

from typing import Any

from taskservice.ledger import Status
from taskservice.specs import FUNCTION_NAME, INVOCATION_ID, FunctionConfig, ReplayMany, ReplayOne, TriggerConfig
from taskservice.trigger_specs import QueueConfig, StorageConfig, TimerConfig
from taskservice.version import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {400: "malformed JSON, bad name, id or query", 404: "unknown function or invocation",
               409: "duplicate invocation id", 413: "payload over the limit", 415: "content type is not JSON",
               422: "invalid function, trigger or replay config, or storage event", 503: "ledger unavailable",
               401: "no live bearer token", 403: "a read-only token asked to change something"}
    return {str(c): {"description": meaning[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": FUNCTION_NAME.pattern}}
_ID = {"name": "invocation_id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": INVOCATION_ID.pattern}}
_NULLABLE_STR = {"type": ["string", "null"]}
_DELIVERY = {"type": "object", "properties": {
    "destination": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
    "attempts": {"type": "integer"}, "lastError": {"type": ["string", "null"]},
    "deliveredAt": {"type": ["string", "null"], "format": "date-time"}, "condition": {"type": "string"}}}
_RECORD = {"type": "object", "description": "a destination record in Function Compute's format", "properties": {
    "timestamp": {"type": "integer"}, "requestContext": {"type": "object"}, "requestPayload": {"type": "string"},
    "responseContext": {"type": "object"}, "responsePayload": {"type": "string"}}}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_BULK_FILTER = {"type": "object", "additionalProperties": False,
                "description": "at least one of function, status, prefix, since, until", "properties": {
                    "function": {"type": "string", "pattern": FUNCTION_NAME.pattern},
                    "status": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "prefix": {"type": "string", "maxLength": 128},
                    "since": {"type": ["string", "integer"], "description": "ISO 8601 or epoch ms"},
                    "until": {"type": ["string", "integer"], "description": "ISO 8601 or epoch ms"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000}}}
_BULK_RESULT = {"type": "object", "properties": {
    "changed": {"type": "integer"}, "items": {"type": "array", "items": {"type": "object"}},
    "refused": {"type": "array", "items": {"type": "object"}}}}


def openapi_document(max_payload_bytes: int) -> dict[str, Any]:
    config_schema = FunctionConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    status_enum = [s.value for s in Status]
    invocation_summary: dict[str, Any] = {
        "type": "object",
        "required": ["invocationId", "requestId", "function", "status"],
        "properties": {
            "invocationId": {"type": "string"}, "requestId": {"type": "string"}, "function": {"type": "string"},
            "status": {"type": "string", "enum": status_enum}, "attempts": {"type": "integer"},
            "createdAt": {"type": "string", "format": "date-time"}, "startedAt": _NULLABLE_TIME,
            "finishedAt": _NULLABLE_TIME, "durationMs": {"type": ["number", "null"]},
            "progress": {"type": "object", "properties": {"percent": {"type": ["number", "null"]},
                                                          "message": _NULLABLE_STR}},
            "result": {}, "error": _NULLABLE_STR, "errorType": _NULLABLE_STR,
            "condition": {"type": ["string", "null"], "enum": ["", "RetriesExhausted", "EventAgeExceeded", "Stopped",
                                                                "Invalid", None]},
            "worker": _NULLABLE_STR, "heartbeatAt": _NULLABLE_TIME, "leaseExpiresAt": _NULLABLE_TIME,
            "nextAttemptAt": _NULLABLE_TIME, "logLines": {"type": "integer"},
            "replayOf": {"type": ["string", "null"], "description": "request id of the failure this replays"},
        },
    }
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message"],
                      "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
            "details": {}, "invocation": _ref("Invocation")}},
        "FunctionConfig": config_schema,
        "Function": {"allOf": [config_schema, {"type": "object", "properties": {
            "name": {"type": "string"}, "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"}}}]},
        "Submitted": {"type": "object", "required": ["invocationId", "requestId", "function", "status"],
                      "properties": {k: invocation_summary["properties"][k]
                                     for k in ("invocationId", "requestId", "function", "status")}},
        "InvocationSummary": invocation_summary,
        "Invocation": {"allOf": [invocation_summary, {"type": "object", "properties": {
            "payload": {}, "destinations": {"type": "array", "items": _DELIVERY},
            "transitions": {"type": "array", "items": {"type": "object", "properties": {
                "from": {"type": ["string", "null"]}, "to": {"type": "string"}, "attempt": {"type": "integer"},
                "reason": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}}}}]},
        "LogLine": {"type": "object", "properties": {"attempt": {"type": "integer"}, "at": {"type": "string"},
                                                      "level": {"type": "string"}, "message": {"type": "string"}}},
    }
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Health of the API and its ledger", "security": [], "responses": {
            "200": _json({"type": "object"}, "healthy"), **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics read from the ledger at scrape time", "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": _json({"type": "object"}, "OK")}}},
        "/v1/functions": {"get": {"summary": "List functions", "responses": {"200": _json(
            {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Function")}}}, "OK")}}},
        "/v1/functions/{name}": {
            "parameters": [_NAME],
            "put": {"summary": "Register or update a function",
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": _ref("FunctionConfig")}}},
                    "responses": {"200": _json(_ref("Function"), "updated"), "201": _json(_ref("Function"), "created"),
                                  **_errors(400, 413, 415, 422)}},
            "get": {"summary": "Read a function", "responses": {"200": _json(_ref("Function"), "OK"),
                                                                **_errors(400, 404)}},
            "delete": {"summary": "Delete a function; its waiting invocations end Invalid",
                       "responses": {"204": {"description": "deleted"}, **_errors(400, 404)}},
        },
        "/v1/functions/{name}/invocations": {"parameters": [_NAME], "post": {
            "summary": "Submit an asynchronous invocation",
            "description": f"The body is the payload: any JSON up to {max_payload_bytes} bytes (empty = null).",
            "parameters": [{"name": "X-Invocation-Id", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": INVOCATION_ID.pattern}},
                           {"name": "X-Invocation-Delay", "in": "header", "required": False,
                            "description": "seconds before it may start (Function Compute's x-fc-async-delay)",
                            "schema": {"type": "number", "minimum": 0, "maximum": 3600}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}},
            "responses": {"202": _json(_ref("Submitted"), "accepted"), **_errors(400, 404, 409, 413, 415)}}},
        "/v1/functions/{name}/invocations/{invocation_id}": {"parameters": [_NAME, _ID], "get": {
            "summary": "Read one invocation with its transitions",
            "responses": {"200": _json(_ref("Invocation"), "OK"), **_errors(400, 404)}}},
        "/v1/functions/{name}/invocations/{invocation_id}/stop": {"parameters": [_NAME, _ID], "post": {
            "summary": "Stop: a waiting invocation ends Stopped at once, a running one goes Stopping → Stopped",
            "responses": {"202": _json(_ref("InvocationSummary"), "stop recorded"),
                          "409": {"description": "already ended",
                                  "content": {"application/json": {"schema": _ERROR}}},
                          **_errors(400, 404)}}},
        "/v1/functions/{name}/invocations/{invocation_id}/retry": {"parameters": [_NAME, _ID], "post": {
            "summary": "Re-run an ended invocation under the same id as a new attempt",
            "description": "Failed, Stopped, Expired and Invalid invocations; Succeeded ones only with "
                           '{"includeSucceeded": true}. The history keeps every attempt with its logs.',
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"includeSucceeded": {"type": "boolean", "default": False}}}}}},
            "responses": {"202": _json(_ref("InvocationSummary"), "enqueued again"),
                          "409": {"description": "not ended, or Succeeded without includeSucceeded",
                                  "content": {"application/json": {"schema": _ERROR}}},
                          **_errors(400, 404, 415)}}},
        "/v1/invocations/stop": {"post": {
            "summary": "Stop every invocation the filter selects that has not ended",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _BULK_FILTER}}},
            "responses": {"200": _json(_BULK_RESULT, "what was stopped and what was refused"),
                          **_errors(400, 415)}}},
        "/v1/invocations/retry": {"post": {
            "summary": "Retry every ended invocation the filter selects",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                **_BULK_FILTER, "properties": {**_BULK_FILTER["properties"],  # type: ignore[dict-item]
                                               "includeSucceeded": {"type": "boolean", "default": False}}}}}},
            "responses": {"200": _json(_BULK_RESULT, "what was retried and what was refused"),
                          **_errors(400, 415)}}},
        "/v1/functions/{name}/invocations/{invocation_id}/logs": {"parameters": [_NAME, _ID], "get": {
            "summary": "The invocation's log lines, oldest first",
            "parameters": [{"name": "attempt", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "invocationId": {"type": "string"}, "status": {"type": "string"},
                "items": {"type": "array", "items": _ref("LogLine")}}}, "OK"), **_errors(400, 404)}}},
        "/v1/invocations": {"get": {
            "summary": "List invocations, newest first, with keyset pagination",
            "parameters": [
                {"name": "function", "in": "query", "schema": {"type": "string", "pattern": FUNCTION_NAME.pattern}},
                {"name": "status", "in": "query", "description": "one or more, comma-separated",
                 "schema": {"type": "string"}},
                {"name": "prefix", "in": "query", "schema": {"type": "string", "maxLength": 128}},
                {"name": "since", "in": "query", "description": "ISO 8601 or epoch ms", "schema": {"type": "string"}},
                {"name": "until", "in": "query", "description": "ISO 8601 or epoch ms", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                             "default": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "items": {"type": "array", "items": _ref("InvocationSummary")},
                "next_cursor": {"type": ["string", "null"]}}}, "OK"), **_errors(400)}}},
        "/v1/dead-letters": {"get": {
            "summary": "Failure records, newest first",
            "parameters": [
                {"name": "function", "in": "query", "schema": {"type": "string", "pattern": FUNCTION_NAME.pattern}},
                {"name": "condition", "in": "query", "schema": {"type": "string", "enum": [
                    "RetriesExhausted", "EventAgeExceeded", "Stopped", "Invalid"]}},
                {"name": "since", "in": "query", "schema": {"type": "string"}},
                {"name": "until", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "function": {"type": "string"}, "invocationId": {"type": "string"},
                    "requestId": {"type": "string"}, "condition": {"type": "string"},
                    "errorType": {"type": ["string", "null"]}, "createdAt": {"type": "string"},
                    "record": _RECORD}}},
                "next_cursor": {"type": ["string", "null"]}}}, "OK"), **_errors(400)}}},
    }
    paths.update(_trigger_and_replay_paths())
    schemas.update(_trigger_and_replay_schemas(invocation_summary))
    schemas.update(config_schema.pop("$defs", {}))
    bearer = {"type": "http", "scheme": "bearer",
              "description": "`taskservice tokens create NAME [--role read-only]`; not needed in `taskservice dev`. "
                             "A read-only token gets 403 on every call that changes something."}
    return {"openapi": "3.1.0", "info": {"title": "taskservice", "version": __version__},
            "security": [{"bearer": []}], "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": bearer}}}


def _trigger_and_replay_schemas(invocation_summary: dict[str, Any]) -> dict[str, Any]:
    lag = {"type": "object", "properties": {
        "total": {"type": ["integer", "null"], "description": "uncommitted records; null before the first report"},
        "partitions": {"type": "array", "items": {"type": "object", "properties": {
            "topic": {"type": "string"}, "partition": {"type": "integer"}, "committed": {"type": "integer"},
            "high": {"type": "integer"}, "lag": {"type": "integer"}, "at": {"type": "string"}}}}}}
    kinds = {model.__name__: model.model_json_schema(ref_template="#/components/schemas/{model}")
             for model in (TriggerConfig, TimerConfig, StorageConfig, QueueConfig)}
    trigger_config = {"oneOf": [_ref(name) for name in kinds], "description": (
        "kind kafka (the default), timer, storage or queue; each kind accepts only its own fields")}
    return {
        **kinds,
        "AnyTriggerConfig": trigger_config,
        "Trigger": {"allOf": [trigger_config, {"type": "object", "properties": {
            "name": {"type": "string"}, "lag": lag, "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"}}}]},
        "ReplayOne": ReplayOne.model_json_schema(ref_template="#/components/schemas/{model}"),
        "ReplayMany": ReplayMany.model_json_schema(ref_template="#/components/schemas/{model}"),
        "Replayed": {"type": "object", "properties": {
            **{k: invocation_summary["properties"][k] for k in ("invocationId", "requestId", "function", "status")},
            "replayOf": {"type": "string"}}},
        "ReplayOutcomes": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "source": {"type": "string"}, "function": _NULLABLE_STR, "invocationId": _NULLABLE_STR,
                "outcome": {"type": "string", "enum": ["replayed", "duplicate", "failed"]},
                "error": _NULLABLE_STR}}},
            "replayed": {"type": "integer"}, "duplicate": {"type": "integer"}, "failed": {"type": "integer"}}},
    }


def _trigger_and_replay_paths() -> dict[str, Any]:
    name = {**_NAME, "description": "trigger name"}
    body = {"required": True, "content": {"application/json": {"schema": _ref("AnyTriggerConfig")}}}
    return {
        "/v1/storage-events": {"post": {
            "summary": "MinIO bucket notifications (webhook target): submit the storage triggers they match",
            "description": "Body {EventName, Key, Records: [S3 event records]}. Every record is checked before "
                           "anything is written; events no trigger watches are accepted and counted as ignored.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"202": _json({"type": "object", "properties": {
                "events": {"type": "integer"}, "submitted": {"type": "array", "items": {"type": "object"}},
                "duplicates": {"type": "integer"}, "ignored": {"type": "integer"}}}, "accepted"),
                **_errors(400, 401, 403, 413, 415, 422)}}},
        "/v1/triggers": {"get": {"summary": "List triggers of every kind with their lag or status",
                                 "responses": {"200": _json(
            {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Trigger")}}}, "OK")}}},
        "/v1/triggers/{name}": {
            "parameters": [name],
            "put": {"summary": "Create or replace a trigger: kafka, timer, storage or queue", "requestBody": body,
                    "responses": {"200": _json(_ref("Trigger"), "replaced"), "201": _json(_ref("Trigger"), "created"),
                                  **_errors(400, 404, 413, 415, 422)}},
            "get": {"summary": "Read a trigger and its lag per partition",
                    "responses": {"200": _json(_ref("Trigger"), "OK"), **_errors(400, 404)}},
            "delete": {"summary": "Delete a trigger; ingest processes stop consuming for it within seconds",
                       "responses": {"204": {"description": "deleted"}, **_errors(400, 404)}},
        },
        "/v1/dead-letters/{dead_letter_id}/replay": {
            "parameters": [{"name": "dead_letter_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "post": {"summary": "Replay one failure record, optionally with an edited payload",
                     "description": "Idempotent: a second replay is 409 with the first replay's invocation, "
                                    "unless force is true.",
                     "requestBody": {"required": False,
                                     "content": {"application/json": {"schema": _ref("ReplayOne")}}},
                     "responses": {"202": _json(_ref("Replayed"), "replay submitted"),
                                   **_errors(400, 404, 409, 413, 415, 422)}}},
        "/v1/dead-letters/replay": {"post": {
            "summary": "Replay failure records by filter, or external Function Compute records",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReplayMany")}}},
            "responses": {"200": _json(_ref("ReplayOutcomes"), "one outcome per record"),
                          **_errors(400, 404, 413, 415, 422)}}},
    }
