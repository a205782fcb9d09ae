"""Query parameters of the invocations and executions lists, kept in the URL so every view of a list can be
bookmarked and shared.

Parsing reuses the API's filter parser (same names, same errors) and adds what only a person needs: time-window
presets, a page size and links that change one thing about the current view.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import request, url_for
from werkzeug.datastructures import MultiDict

from taskservice.api.requests import int_arg, invocation_filter
from taskservice.clock import utcnow
from taskservice.errors import InvalidQuery
from taskservice.ledger.queries import InvocationFilter, decode_cursor

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
           "24h": timedelta(hours=24), "7d": timedelta(days=7)}
PAGE_SIZES = (25, 50, 100, 200)
CURSOR_KEYS = ("older", "newer")


@dataclass(frozen=True)
class ListQuery:
    flt: InvocationFilter
    window: str | None
    limit: int
    older: str | None
    newer: str | None


def list_query(args: MultiDict[str, str]) -> ListQuery:
    """The list's view from query parameters; InvalidQuery (a 400 page) for anything it cannot read."""
    flt = invocation_filter(args, args.getlist("status"))
    window, since = window_since(args, flt.since, flt.until)
    older, newer = cursors(args)
    return ListQuery(flt=replace(flt, since=since), window=window, limit=page_size(args), older=older, newer=newer)


def window_since(args: MultiDict[str, str], since: datetime | None, until: datetime | None
                 ) -> tuple[str | None, datetime | None]:
    """A time-window preset (`window=1h`) as the `since` it stands for; either a window or since, not both."""
    window = args.get("window") or None
    if window is not None:
        if window not in WINDOWS:
            raise InvalidQuery(f"unknown time window {window!r}; one of {', '.join(WINDOWS)}")
        if since is not None:
            raise InvalidQuery("give either a time window or since, not both")
        since = utcnow() - WINDOWS[window]
    if since and until and since >= until:
        raise InvalidQuery("since must be before until")
    return window, since


def cursors(args: MultiDict[str, str]) -> tuple[str | None, str | None]:
    """The `older` and `newer` cursors, checked to be cursors at all."""
    older, newer = args.get("older") or None, args.get("newer") or None
    if older and newer:
        raise InvalidQuery("give either older or newer, not both")
    for cursor in (older, newer):
        if cursor:
            decode_cursor(cursor)
    return older, newer


def page_size(args: MultiDict[str, str]) -> int:
    return int_arg(args, "limit", 50, 1, 500)


def list_url(**changes: Any) -> str:
    """The current invocations list URL with some parameters changed (see `url_with`)."""
    return url_with("console.invocations", **changes)


def url_with(endpoint: str, **changes: Any) -> str:
    """The current list URL with some parameters changed (None removes one); any change of filter drops the
    cursor, because a cursor only means something for the filter it was made under."""
    args = MultiDict(request.args)
    if not set(changes) <= set(CURSOR_KEYS):
        for key in CURSOR_KEYS:
            args.pop(key, None)
    for key, value in changes.items():
        args.pop(key, None)
        if isinstance(value, list | tuple):
            for item in value:
                args.add(key, item)
        elif value is not None:
            args[key] = value
    values: dict[str, Any] = args.to_dict(flat=False)
    return url_for(endpoint, **values)


def toggle_status(current: tuple[str, ...], status: str) -> list[str]:
    return [s for s in current if s != status] if status in current else [*current, status]
