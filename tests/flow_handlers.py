"""Step handlers for the flow tests; workers import them as tests.flow_handlers:<name>."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.handlers import wait_for_gate


def double(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Records when it ran (start, end, pid) in event["log"] if given, so a test can check concurrency. Given
    event["gate"], it holds until that file exists: the step stays Running for as long as the test needs."""
    started = time.time()
    time.sleep(float(event.get("seconds", 0)))
    if event.get("gate"):
        wait_for_gate(event["gate"])
    if event.get("log"):
        with open(event["log"], "a") as fh:
            fh.write(json.dumps({"item": event.get("item"), "start": started, "end": time.time(),
                                 "invocation": context.invocation_id}) + "\n")
    return {"doubled": event["item"] * 2}


def add(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"sum": event["a"] + event["b"]}


class Flaky(Exception):
    """Raised on purpose until enough attempts were made."""


def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails until it has been called event["succeed_after"] times (counted in event["counter"], one line per call;
    a step attempt is a new invocation, so the count must live outside the handler)."""
    counter = Path(event["counter"])
    with counter.open("a") as fh:
        fh.write(f"{context.invocation_id} {time.time()}\n")
    calls = len(counter.read_text().splitlines())
    if calls < int(event["succeed_after"]):
        raise Flaky(f"call {calls} fails on purpose")
    return {"calls": calls}


def fail_item(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails for the items listed in the file event["bad"] names; removing a line there makes it pass (redrive)."""
    bad = Path(event["bad"]).read_text().split() if Path(event["bad"]).exists() else []
    with open(event["calls"], "a") as fh:
        fh.write(f"{event['item']}\n")
    if str(event["item"]) in bad:
        raise Flaky(f"item {event['item']} fails on purpose")
    return {"ok": event["item"]}
