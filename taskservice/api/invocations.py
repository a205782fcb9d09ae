"""Submission and reads of invocations."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import json_body
from taskservice.api.schemas import (
    BatchSubmission,
    BulkRetrySelection,
    BulkSelection,
    InvocationQuery,
    LogsQuery,
    RetryOptions,
)
from taskservice.api.views import (
    batch_view,
    bulk_view,
    invocation_detail_view,
    invocation_page_view,
    invocation_view,
    logs_view,
    submitted_view,
)
from taskservice.specs import check_function_name, check_invocation_id
from taskservice.submission import BatchItem, check_delay

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
    response = jsonify(submitted_view(invocation))
    response.headers["Location"] = f"/v1/functions/{name}/invocations/{invocation.invocation_id}"
    return response, 202


@invocations_api.post("/functions/<name>/invocations:batch")
def submit_batch(name: str) -> tuple[Response, int]:
    """Bulk submission: up to 1,000 invocations in one ledger transaction and one publish batch. Each item is
    judged on its own (202/409/400/413 per item, in the answer); what concerns the request as a whole — bad JSON, a
    malformed item, too many items, an unknown function — refuses all of it and writes nothing."""
    services = current_app.extensions["taskservice"]
    check_function_name(name)
    body = BatchSubmission.parse_batch(json_body(request, max_bytes=services.settings.max_batch_bytes))
    outcomes = services.submitter.submit_many(name, [BatchItem(item.payload, item.invocationId)
                                                     for item in body.items])
    return jsonify(batch_view(outcomes)), 200


@invocations_api.get("/functions/<name>/invocations/<invocation_id>")
def get_invocation(name: str, invocation_id: str) -> Response:
    services = current_app.extensions["taskservice"]
    invocation = services.ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    return jsonify(invocation_detail_view(services.ledger, services.outbox, invocation))


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
    options = RetryOptions.parse(_body(services))
    invocation = services.ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    retried = services.control.retry(invocation, include_succeeded=options.includeSucceeded)
    return jsonify(invocation_view(retried)), 202


@invocations_api.post("/invocations/stop")
def stop_matching() -> Response:
    """Bulk stop: every invocation the filter selects that has not ended."""
    services = current_app.extensions["taskservice"]
    body = BulkSelection.parse(_body(services))
    return jsonify(bulk_view(services.control.stop_matching(body.filter(), limit=body.limit)))


@invocations_api.post("/invocations/retry")
def retry_matching() -> Response:
    """Bulk retry: every ended invocation the filter selects (Succeeded ones only with includeSucceeded)."""
    services = current_app.extensions["taskservice"]
    body = BulkRetrySelection.parse(_body(services))
    result = services.control.retry_matching(body.filter(), include_succeeded=body.includeSucceeded,
                                             limit=body.limit)
    return jsonify(bulk_view(result))


def _body(services: Any) -> Any:
    return json_body(request, max_bytes=services.settings.max_payload_bytes, allow_empty=True, empty={})


@invocations_api.get("/functions/<name>/invocations/<invocation_id>/logs")
def get_logs(name: str, invocation_id: str) -> Response:
    ledger = current_app.extensions["taskservice"].ledger
    invocation = ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    query = LogsQuery.parse(request.args)
    return jsonify(logs_view(invocation, ledger.logs(invocation.pk, attempt=query.attempt)))


@invocations_api.get("/invocations")
def list_invocations() -> Response:
    ledger = current_app.extensions["taskservice"].ledger
    query = InvocationQuery.parse(request.args)
    page = ledger.list_invocations(query.filter(), limit=query.limit, cursor=query.cursor)
    return jsonify(invocation_page_view(page.items, page.next_cursor))
