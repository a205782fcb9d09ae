"""Returns its event; fails on purpose when the event says {"fail": "message"} (for trying retries and destinations)."""
from __future__ import annotations

from typing import Any


class RequestedFailure(Exception):
    """Raised when the caller asked for a failure."""


def handler(event: Any, context: Any) -> Any:
    context.logger.info("echo for %s (attempt %d)", context.invocation_id, context.attempt)
    if isinstance(event, dict) and event.get("fail"):
        raise RequestedFailure(str(event["fail"]))
    return event
