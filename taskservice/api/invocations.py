"""Submission and reads of invocations."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import int_arg, json_body, time_arg
from taskservice.api.views import delivery_view, invocation_view, log_view, submitted_view, transition_view
from taskservice.errors import InvalidQuery
from taskservice.ledger import Status
from taskservice.ledger.queries import InvocationFilter
from taskservice.specs import check_function_name, check_invocation_id

invocations_api = Blueprint("invocations", __name__, url_prefix="/v1")


@invocations_api.post("/functions/<name>/invocations")
def submit(name: str) -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    check_function_name(name)
    invocation_id = request.headers.get("X-Invocation-Id")
    if invocation_id is not None:
        check_invocation_id(invocation_id)
    payload = json_body(request, max_bytes=services.settings.max_payload_bytes, allow_empty=True)
    invocation = services.submitter.submit(name, payload, invocation_id=invocation_id)
    response = jsonify(submitted_view(invocation))
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
    return jsonify(view)


@invocations_api.post("/functions/<name>/invocations/<invocation_id>/stop")
def stop(name: str, invocation_id: str) -> tuple[Response, int]:
    """Stop is a ledger state: it takes effect even while no worker is running."""
    ledger = current_app.extensions["taskservice"].ledger
    invocation = ledger.get_invocation(check_function_name(name), check_invocation_id(invocation_id))
    return jsonify(invocation_view(ledger.request_stop(invocation.pk))), 202


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
    args = request.args
    function = args.get("function") or None
    if function is not None:
        check_function_name(function)
    statuses = []
    for value in [s for raw in args.getlist("status") for s in raw.split(",") if s]:
        try:
            statuses.append(Status(value))
        except ValueError:
            raise InvalidQuery(f"unknown status {value!r}; one of {', '.join(s.value for s in Status)}") from None
    prefix = args.get("prefix") or None
    if prefix is not None and len(prefix) > 128:
        raise InvalidQuery("prefix is longer than an invocation id can be (128)")
    flt = InvocationFilter(function=function, statuses=tuple(statuses), prefix=prefix,
                           since=time_arg(args, "since"), until=time_arg(args, "until"))
    page = ledger.list_invocations(flt, limit=int_arg(args, "limit", 50, 1, 1000), cursor=args.get("cursor") or None)
    return jsonify({"items": [invocation_view(i, payload=False) for i in page.items], "next_cursor": page.next_cursor})
