"""GET /v1/dead-letters: every failure record, filterable by function, condition and time; and their replay."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api import schemas
from taskservice.api.requests import json_body
from taskservice.api.schemas import DeadLetterQuery
from taskservice.api.views import dead_letter_page_view
from taskservice.errors import DeadLetterNotFound, InvalidQuery
from taskservice.specs import ReplayMany, ReplayOne, check_function_name
from taskservice.statuses import FAILURE_CONDITIONS

dead_letters_api = Blueprint("dead_letters", __name__, url_prefix="/v1")


def dead_letter_filter(args: Any) -> tuple[str | None, str | None]:
    """(function, condition) from the console's query parameters, where an empty field means no filter (the API
    reads its stricter contract with schemas.DeadLetterQuery)."""
    function = args.get("function") or None
    if function is not None:
        check_function_name(function)
    condition = args.get("condition") or None
    if condition is not None and condition not in FAILURE_CONDITIONS:
        raise InvalidQuery(f"unknown condition {condition!r}; one of {', '.join(FAILURE_CONDITIONS)}")
    return function, condition


REPLAY_MAX_BYTES = 16 * 1024 * 1024  # up to 1000 external records, each carrying its payload
DEAD_LETTER_ID_MAX = 2**63 - 1  # the ledger's BIGINT: a larger id names no dead letter (and overflows SQLite)


@dead_letters_api.get("/dead-letters")
def list_dead_letters() -> Response:
    query = DeadLetterQuery.parse(request.args)
    items, cursor = current_app.extensions["taskservice"].ledger.list_dead_letters(
        function=query.function, condition=query.condition, since=query.since, until=query.until,
        limit=query.limit, cursor=query.cursor)
    return jsonify(dead_letter_page_view(items, cursor))


@dead_letters_api.post("/dead-letters/<int:dead_letter_id>/replay")
def replay_one(dead_letter_id: int) -> tuple[Response, int]:
    """Replay one failure; a second replay is 409 with the first replay's invocation unless force is set."""
    services = current_app.extensions["taskservice"]
    if dead_letter_id > DEAD_LETTER_ID_MAX:
        raise DeadLetterNotFound(f"dead letter {dead_letter_id} does not exist")
    body = ReplayOne.parse(json_body(request, max_bytes=services.settings.max_payload_bytes + 1024,
                                     allow_empty=True, empty={}))
    fields = body.model_fields_set
    kwargs = {"payload": body.payload} if "payload" in fields else {}
    invocation = services.replayer.replay_dead_letter(dead_letter_id, force=body.force, **kwargs)
    replayed = schemas.Replayed(invocationId=invocation.invocation_id, requestId=invocation.request_id,
                                function=invocation.function, status=invocation.status, replayOf=invocation.replay_of)
    return jsonify(replayed.dump()), 202


@dead_letters_api.post("/dead-letters/replay")
def replay_many() -> Response:
    """Replay many failures by filter, or external FC records; one outcome per record, never all-or-nothing."""
    services = current_app.extensions["taskservice"]
    body = ReplayMany.parse(json_body(request, max_bytes=REPLAY_MAX_BYTES))
    if body.function is not None:
        services.ledger.get_function(body.function)  # a filter naming an unknown function is a 404, not "0 done"
    outcomes = services.replayer.replay_many(body)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in ("replayed", "duplicate", "failed")}
    return jsonify(schemas.ReplayOutcomes(items=[o.view() for o in outcomes], **counts).dump())
