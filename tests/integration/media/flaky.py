"""A segment step that fails for one segment index while a flag file exists, then behaves like the real one. The
failure is injected through the execution's input (`fail`: {"index", "flag", "once"}), which every foreach
iteration carries: `once` removes the flag on the first failure (a retry succeeds), otherwise every attempt fails
until the test removes the flag (a permanent failure, then a redrive)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.handlers.split_merge import segment_handler


def fail_segment(event: Any, context: Any) -> dict[str, Any]:
    plan = event.get("fail") or {}
    flag = Path(plan["flag"]) if plan.get("flag") else None
    if flag is not None and event.get("index") == plan.get("index") and flag.exists():
        if plan.get("once"):
            flag.unlink()
        raise RuntimeError(f"planned failure of segment {event['index']} ({context.invocation_id})")
    return segment_handler(event, context)
