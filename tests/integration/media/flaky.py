"""A segment handler that fails the first attempt of segment 2 (ids end in -seg00002), then behaves like the real
one; the tests deploy it in place of transcode-segment to watch one segment being retried on its own."""
from __future__ import annotations

from typing import Any

from workers.handlers.split_merge import segment_handler


def fail_once(event: Any, context: Any) -> dict[str, Any]:
    if context.attempt == 1 and context.invocation_id.endswith("-seg00002"):
        raise RuntimeError(f"planned failure of {context.invocation_id} on its first attempt")
    return segment_handler(event, context)
