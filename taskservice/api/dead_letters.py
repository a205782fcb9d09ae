"""GET /v1/dead-letters: every failure record, filterable by function, condition and time."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import int_arg, time_arg
from taskservice.api.views import dead_letter_view
from taskservice.errors import InvalidQuery
from taskservice.specs import check_function_name

dead_letters_api = Blueprint("dead_letters", __name__, url_prefix="/v1")
CONDITIONS = ("RetriesExhausted", "EventAgeExceeded", "Stopped", "Invalid")


@dead_letters_api.get("/dead-letters")
def list_dead_letters() -> Response:
    args = request.args
    function = args.get("function") or None
    if function is not None:
        check_function_name(function)
    condition = args.get("condition") or None
    if condition is not None and condition not in CONDITIONS:
        raise InvalidQuery(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    items, cursor = current_app.extensions["taskservice"].ledger.list_dead_letters(
        function=function, condition=condition, since=time_arg(args, "since"), until=time_arg(args, "until"),
        limit=int_arg(args, "limit", 50, 1, 1000), cursor=args.get("cursor") or None)
    return jsonify({"items": [dead_letter_view(d) for d in items], "next_cursor": cursor})
