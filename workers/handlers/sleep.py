"""Sleeps for `seconds` (default 5) reporting progress each `step` seconds: a stand-in for a long job in demos."""
from __future__ import annotations

import time
from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    seconds = float(event.get("seconds", 5))
    step = max(0.05, float(event.get("step", 0.5)))
    started = time.monotonic()
    context.logger.info("sleeping %.1fs", seconds)
    while (elapsed := time.monotonic() - started) < seconds:
        if context.stopping:
            context.logger.info("stop requested after %.1fs", elapsed)
            break
        context.progress(100 * elapsed / seconds, f"{elapsed:.1f}s of {seconds:.1f}s")
        time.sleep(min(step, seconds - elapsed))
    context.progress(100, "done")
    return {"slept": round(time.monotonic() - started, 3)}
