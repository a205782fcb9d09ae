"""Request parsing shared by the endpoints: JSON bodies with content-type and size checks, query parameters."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Request

from taskservice.errors import InvalidQuery, MalformedJSON, PayloadTooLarge, UnsupportedMediaType
from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.states import Status
from taskservice.specs import check_function_name, parse_time


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_body(request: Request, *, max_bytes: int, allow_empty: bool = False, empty: Any = None) -> Any:
    """Parse the body as JSON: 415 for another content type, 413 over the limit, 400 when malformed.

    An empty body is `empty` when allowed: None for a payload (empty = null), {} for an optional options object,
    so that an explicit `null` there can still be refused as the non-object it is."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {max_bytes} bytes")
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    if not raw.strip():
        if allow_empty:
            return empty
        raise MalformedJSON("the request body is empty; send a JSON document")
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {request.mimetype or 'missing'!r}")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJSON(f"the request body is not valid JSON: {exc}") from None


def int_arg(args: Any, name: str, default: int, low: int, high: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidQuery(f"{name} must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise InvalidQuery(f"{name} must be between {low} and {high}, not {number}")
    return number


def invocation_filter(args: Any, statuses: list[str]) -> InvocationFilter:
    """The invocation filter shared by the list, bulk stop and bulk retry: from query parameters or a JSON body
    (`args` needs only `.get`; `statuses` may hold comma-separated values)."""
    function = args.get("function") or None
    if function is not None:
        check_function_name(function)
    parsed = []
    for value in [s.strip() for raw in statuses for s in str(raw).split(",") if s.strip()]:
        try:
            parsed.append(Status(value))
        except ValueError:
            raise InvalidQuery(f"unknown status {value!r}; one of {', '.join(s.value for s in Status)}") from None
    prefix = args.get("prefix") or None
    if prefix is not None and (not isinstance(prefix, str) or len(prefix) > 128):
        raise InvalidQuery("prefix must be a string no longer than an invocation id can be (128)")
    return InvocationFilter(function=function, statuses=tuple(parsed), prefix=prefix,
                            since=time_arg(args, "since"), until=time_arg(args, "until"))


def time_arg(args: Any, name: str) -> datetime | None:
    """ISO 8601 (naive means UTC) or epoch milliseconds, read by specs.parse_time as bodies are (TIME_SCHEMA)."""
    value = args.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidQuery(f"{name} must be ISO 8601 or epoch milliseconds, not {value!r}") from None
