"""Reading media flow executions in tests: step submissions per path, from the execution's history."""
from __future__ import annotations

from collections import Counter
from typing import Any


def submissions(client: Any, flow: str, execution: str) -> Counter[str]:
    """How many step invocations each step path got (every attempt and every redrive submits a new one)."""
    counts: Counter[str] = Counter()
    after = 0
    while True:
        page = client.get(f"/v1/flows/{flow}/executions/{execution}/history?after={after}").get_json()
        counts.update(e["path"] for e in page["items"] if e["type"] == "TaskSubmitted")
        if not page["items"]:
            return counts
        after = page["last"]
