"""PUT/GET/DELETE /v1/triggers/{name}, GET /v1/triggers: triggers of every kind (kafka, timer, storage, queue), with
what their processes report (Kafka lag, next tick, last event, backlog)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import json_body
from taskservice.api.views import trigger_view
from taskservice.specs import check_function_name
from taskservice.trigger_specs import parse_trigger

triggers_api = Blueprint("triggers", __name__, url_prefix="/v1/triggers")
CONFIG_MAX_BYTES = 64 * 1024


@triggers_api.put("/<name>")
def put_trigger(name: str) -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    check_function_name(name)  # trigger names follow the function-name rule
    config = parse_trigger(json_body(request, max_bytes=CONFIG_MAX_BYTES))
    services.ledger.get_function(config.function)  # 404 before anything is written
    trigger, created = services.triggers.put(name, config)
    return jsonify(trigger_view(trigger)), 201 if created else 200


@triggers_api.get("")
def list_triggers() -> Response:
    return jsonify({"items": [trigger_view(t) for t in current_app.extensions["taskservice"].triggers.list()]})


@triggers_api.get("/<name>")
def get_trigger(name: str) -> Response:
    check_function_name(name)
    return jsonify(trigger_view(current_app.extensions["taskservice"].triggers.get(name)))


@triggers_api.delete("/<name>")
def delete_trigger(name: str) -> tuple[str, int]:
    check_function_name(name)
    current_app.extensions["taskservice"].triggers.delete(name)
    return "", 204
