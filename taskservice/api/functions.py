"""PUT/GET/DELETE /v1/functions/{name}, GET /v1/functions."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import json_body
from taskservice.api.views import function_view
from taskservice.specs import FunctionConfig, check_function_name

functions_api = Blueprint("functions", __name__, url_prefix="/v1/functions")
CONFIG_MAX_BYTES = 64 * 1024


@functions_api.put("/<name>")
def put_function(name: str) -> tuple[Response, int]:
    check_function_name(name)
    config = FunctionConfig.parse(json_body(request, max_bytes=CONFIG_MAX_BYTES))
    fn, created = current_app.extensions["taskservice"].ledger.put_function(name, config)
    return jsonify(function_view(fn)), 201 if created else 200


@functions_api.get("")
def list_functions() -> Response:
    functions = current_app.extensions["taskservice"].ledger.list_functions()
    return jsonify({"items": [function_view(fn) for fn in functions]})


@functions_api.get("/<name>")
def get_function(name: str) -> Response:
    check_function_name(name)
    return jsonify(function_view(current_app.extensions["taskservice"].ledger.get_function(name)))


@functions_api.delete("/<name>")
def delete_function(name: str) -> tuple[str, int]:
    check_function_name(name)
    current_app.extensions["taskservice"].ledger.delete_function(name)
    return "", 204
