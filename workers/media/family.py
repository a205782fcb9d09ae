"""Fan-out from a media handler: submit children (re-adopting the ones a previous attempt already submitted), wait
for them while reporting progress, and fail clearly when any child did not succeed."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskservice.specs import FUNCTION_NAME
from workers.context import SubmissionRefused
from workers.media import BadEvent, ChildrenFailed


def function_name(event: dict[str, Any], field: str, default: str) -> str:
    name = event.get(field, default)
    if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
        raise BadEvent(f"{field} must be a function name; got {name!r}")
    return name


def submit_or_adopt(context: Any, function: str, payload: dict[str, Any], invocation_id: str) -> tuple[str, str]:
    """Submit a child under a deterministic id; when a retried parent finds it already there (409), adopt it, so a
    parent's retry never duplicates work its children already did or are doing."""
    try:
        context.submit(function, payload, invocation_id=invocation_id)
    except SubmissionRefused as exc:
        if exc.code != "InvocationAlreadyExist":
            if exc.code == "FunctionNotFound":
                raise BadEvent(f"child function {function!r} is not deployed: {exc}") from None
            raise
        status = (exc.existing or {}).get("status", "?")
        context.logger.info("adopting child %s/%s submitted by an earlier attempt (%s)", function, invocation_id,
                            status)
    return function, invocation_id


def wait_all(context: Any, children: Sequence[tuple[str, str]], *, start: float, end: float, what: str
             ) -> list[dict[str, Any]]:
    """Wait for every child; progress moves from `start` to `end` percent with the children's own progress."""

    def report(items: list[dict[str, Any]]) -> None:
        done = sum(1 for i in items if i["status"] == "Succeeded")
        mean = sum(100.0 if i["status"] == "Succeeded" else (i["progress"] or 0.0) for i in items) / len(items)
        context.progress(start + (end - start) * mean / 100, f"{done}/{len(items)} {what} done")

    items = context.wait_for(children, on_progress=report)
    failed = [i for i in items if i["status"] != "Succeeded"]
    if failed:
        details = "; ".join(f"{i['function']}/{i['invocationId']} {i['status']} ({i['errorType']}: "
                            f"{(i['error'] or '').splitlines()[0][:200] if i['error'] else ''})" for i in failed)
        raise ChildrenFailed(f"{len(failed)} of {len(items)} {what} did not succeed: {details}")
    return items
