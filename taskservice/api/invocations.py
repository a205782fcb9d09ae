"""Submission and reads of invocations."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import int_arg, invocation_filter, json_body
from taskservice.api.views import (
    bulk_view,
    delivery_view,
    family_view,
    invocation_view,
    log_view,
    starts_at,
    submitted_view,
    transition_view,
)
from taskservice.control import BULK_LIMIT
from taskservice.errors import InvalidQuery
from taskservice.ledger.queries import InvocationFilter
from taskservice.specs import check_function_name, check_invocation_id
from taskservice.submission import check_delay

invocations_api = Blueprint("invocations", __name__, url_prefix="/v1")


@invocations_api.post("/functions/<name>/invocations")
def submit(name: str) -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    check_function_name(name)
    invocation_id = request.headers.get("X-Invocation-Id")
    if invocation_id is not None:
        check_invocation_id(invocation_id)
    delay = request.headers.get("X-Invocation-Delay")
    delay_s = 0.0 if delay is None else check_delay(delay)
    payload = json_body(request, max_bytes=services.settings.max_payload_bytes, allow_empty=True)
    invocation = services.submitter.submit(name, payload, invocation_id=invocation_id, delay_s=delay_s)
    view = submitted_view(invocation)
    if delay_s > 0:
        view["startsAt"] = starts_at(invocation)
    response = jsonify(view)
    response.headers["Location"] = f"/v1/functions/{name}/invocations/{invocation.invocation_id}"
    return response, 202


@invocations_api.get("/functions/<name>/invocations/<invocation_id>")
def get_invocation(name: str, invocation_id: str) -> Response:
    ledger = current_app.extensions["taskservice"].ledger
    invocation = ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    view = invocation_view(invocation)
    view["transitions"] = [transition_view(t) for t in ledger.transitions(invocation.pk)]
    outbox = current_app.extensions["taskservice"].outbox
    view["destinations"] = [delivery_view(d) for d in outbox.for_invocation(invocation.pk)]
    view.update(family_view(ledger, invocation))
    return jsonify(view)


@invocations_api.post("/functions/<name>/invocations/<invocation_id>/stop")
def stop(name: str, invocation_id: str) -> tuple[Response, int]:
    """Stop is a ledger state: it takes effect even while no worker is running, and reaches fan-out children."""
    services = current_app.extensions["taskservice"]
    invocation = services.ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    return jsonify(invocation_view(services.control.stop(invocation))), 202


@invocations_api.post("/functions/<name>/invocations/<invocation_id>/retry")
def retry(name: str, invocation_id: str) -> tuple[Response, int]:
    """Re-run an ended invocation under the same id; body `{"includeSucceeded": true}` to re-run a success."""
    services = current_app.extensions["taskservice"]
    options = _options(services, ("includeSucceeded",))
    invocation = services.ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    retried = services.control.retry(invocation, include_succeeded=_flag(options, "includeSucceeded"))
    return jsonify(invocation_view(retried)), 202


@invocations_api.post("/invocations/stop")
def stop_matching() -> Response:
    """Bulk stop: every invocation the filter selects that has not ended."""
    services = current_app.extensions["taskservice"]
    body = _options(services, ("function", "status", "prefix", "since", "until", "limit"))
    flt = _bulk_filter(body)
    return jsonify(bulk_view(services.control.stop_matching(flt, limit=_limit(body))))


@invocations_api.post("/invocations/retry")
def retry_matching() -> Response:
    """Bulk retry: every ended invocation the filter selects (Succeeded ones only with includeSucceeded)."""
    services = current_app.extensions["taskservice"]
    body = _options(services, ("function", "status", "prefix", "since", "until", "limit", "includeSucceeded"))
    flt = _bulk_filter(body)
    result = services.control.retry_matching(flt, include_succeeded=_flag(body, "includeSucceeded"),
                                             limit=_limit(body))
    return jsonify(bulk_view(result))


def _options(services: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    body = json_body(request, max_bytes=services.settings.max_payload_bytes, allow_empty=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidQuery("the request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidQuery(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return body


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidQuery(f"{name} must be true or false")
    return value


def _limit(body: dict[str, Any]) -> int:
    limit = body.get("limit", BULK_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= BULK_LIMIT:
        raise InvalidQuery(f"limit must be an integer between 1 and {BULK_LIMIT}")
    return limit


def _bulk_filter(body: dict[str, Any]) -> InvocationFilter:
    """A bulk action needs at least one condition: an empty body must not stop or retry everything by accident."""
    status = body.get("status", [])
    statuses = [status] if isinstance(status, str) else status
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        raise InvalidQuery("status must be a status name or a list of them")
    flt = invocation_filter(body, statuses)
    if flt == InvocationFilter():
        raise InvalidQuery("give at least one of function, status, prefix, since, until")
    return flt


@invocations_api.get("/functions/<name>/invocations/<invocation_id>/logs")
def get_logs(name: str, invocation_id: str) -> Response:
    ledger = current_app.extensions["taskservice"].ledger
    invocation = ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    attempt = request.args.get("attempt")
    attempt_no = None if attempt is None else int_arg(request.args, "attempt", 0, 1, 1000)
    lines = ledger.logs(invocation.pk, attempt=attempt_no)
    return jsonify({"invocationId": invocation.invocation_id, "status": invocation.status.value,
                    "items": [log_view(line) for line in lines]})


@invocations_api.get("/invocations")
def list_invocations() -> Response:
    ledger = current_app.extensions["taskservice"].ledger
    flt = invocation_filter(request.args, request.args.getlist("status"))
    page = ledger.list_invocations(flt, limit=int_arg(request.args, "limit", 50, 1, 1000),
                                   cursor=request.args.get("cursor") or None)
    return jsonify({"items": [invocation_view(i, payload=False) for i in page.items], "next_cursor": page.next_cursor})
