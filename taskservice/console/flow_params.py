"""Query parameters of the executions list: the invocations list's filters (params.py) for executions — flow,
status, name prefix, since/until or a time window, page size and an `older` cursor — with the same clear errors."""
from __future__ import annotations

from dataclasses import dataclass

from werkzeug.datastructures import MultiDict

from taskservice.api.requests import time_arg
from taskservice.console.params import cursors, page_size, window_since
from taskservice.errors import InvalidQuery
from taskservice.ledger.flows import EXECUTION_STATUSES, ExecutionFilter
from taskservice.specs import check_function_name


@dataclass(frozen=True)
class ExecutionListQuery:
    flt: ExecutionFilter
    window: str | None
    limit: int
    older: str | None


def execution_query(args: MultiDict[str, str]) -> ExecutionListQuery:
    """The list's view from query parameters; InvalidQuery (a 400 page) for anything it cannot read."""
    flow = args.get("flow") or None
    if flow is not None:
        check_function_name(flow)
    statuses = []
    for value in [s.strip() for raw in args.getlist("status") for s in raw.split(",") if s.strip()]:
        if value not in EXECUTION_STATUSES:
            raise InvalidQuery(f"unknown execution status {value!r}; one of {', '.join(EXECUTION_STATUSES)}")
        statuses.append(value)
    prefix = args.get("prefix") or None
    if prefix is not None and len(prefix) > 128:
        raise InvalidQuery("prefix must be no longer than an execution name can be (128)")
    until = time_arg(args, "until")
    window, since = window_since(args, time_arg(args, "since"), until)
    if args.get("newer"):
        raise InvalidQuery("the executions list pages only towards older executions: use older, not newer")
    older, _ = cursors(args)
    return ExecutionListQuery(flt=ExecutionFilter(flow=flow, statuses=tuple(statuses), prefix=prefix, since=since,
                                                  until=until), window=window, limit=page_size(args), older=older)
