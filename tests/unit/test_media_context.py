"""The context features the media handlers build on, through the real sandbox (forked handler, real pipes); only the
ledger side is replaced by a recorder, as in test_sandbox."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from workers.context import InvalidEvent
from workers.sandbox import Job, run_isolated


class ChildLedger:
    """Answers children-status calls: every child is Running until `finish_after` calls, then Succeeded."""

    def __init__(self, finish_after: int = 3, stop_after_ticks: int | None = None) -> None:
        self.calls = 0
        self.finish_after = finish_after
        self.stop_after_ticks = stop_after_ticks
        self.ticks = 0
        self.progress: list[tuple[float, str]] = []

    def on_start(self, pid: int) -> None:
        """The handler's pid does not matter to these tests."""

    def on_log(self, at: str, level: str, message: str) -> None:
        """These tests look at progress and children only; log lines are dropped."""

    def on_progress(self, percent: float, message: str) -> None:
        self.progress.append((percent, message))

    def on_submit(self, function: str, payload: Any, invocation_id: str | None) -> dict[str, Any]:
        return {"invocationId": invocation_id, "status": "Enqueued"}

    def on_children(self, children: list[list[str]]) -> dict[str, Any]:
        self.calls += 1
        status = "Succeeded" if self.calls >= self.finish_after else "Running"
        return {"items": [{"function": f, "invocationId": i, "status": status, "attempts": 1, "progress": 50.0,
                           "result": {"n": n} if status == "Succeeded" else None, "error": None, "errorType": None}
                          for n, (f, i) in enumerate(children)]}

    def on_tick(self) -> str | None:
        self.ticks += 1
        return "stop" if self.stop_after_ticks is not None and self.ticks >= self.stop_after_ticks else None


def waiting_parent(event: Any, context: Any) -> Any:
    children = [("child", f"{context.invocation_id}-{n}") for n in range(2)]
    items = context.wait_for(children, poll_s=0.05,
                             on_progress=lambda items: context.progress(10, f"{len(items)} children"))
    return [item["result"] for item in items]


def stopped_while_waiting(event: Any, context: Any) -> Any:
    """Asks itself to stop (SIGTERM, as a worker's warm shutdown does) while its children still run."""
    children = [("child", "parent-0")]
    return context.wait_for(children, poll_s=60, on_progress=lambda _: os.kill(os.getpid(), signal.SIGTERM))


def refuses(event: Any, context: Any) -> None:
    raise InvalidEvent("object key 'a/../b' has an empty, '.' or '..' segment")


def uses_storage(event: Any, context: Any) -> int:
    path = Path(event["path"])
    path.write_bytes(b"x" * 10)
    context.storage.upload("media", "in/x.bin", path)
    return context.storage.stat("media", "in/x.bin").size


def job(handler: str, payload: Any = None, storage_url: str = "") -> Job:
    return Job(handler=f"tests.unit.test_media_context:{handler}", payload=json.dumps(payload), request_id="r",
               invocation_id="parent", function="f", attempt=1, timeout_s=20, storage_url=storage_url)


def test_wait_for_polls_the_ledger_until_every_child_ended() -> None:
    hooks = ChildLedger(finish_after=3)
    outcome = run_isolated(job("waiting_parent"), hooks)
    assert outcome.kind == "succeeded" and outcome.result == [{"n": 0}, {"n": 1}]
    assert hooks.calls == 3 and hooks.progress[-1] == (10.0, "2 children")


def test_wait_for_gives_up_when_the_attempt_is_asked_to_stop() -> None:
    hooks = ChildLedger(finish_after=10**9)
    outcome = run_isolated(job("stopped_while_waiting"), hooks)
    assert outcome.kind == "failed" and outcome.error_type == "StopRequested"
    assert hooks.calls == 1  # it did not sit out its 60 s poll interval


def test_invalid_event_ends_invalid_not_failed() -> None:
    outcome = run_isolated(job("refuses"), ChildLedger())
    assert outcome.kind == "invalid" and outcome.error_type == "InvalidEvent" and "'..'" in outcome.error


def test_context_storage_opens_the_configured_store_in_the_handler(tmp_path: Path) -> None:
    outcome = run_isolated(job("uses_storage", {"path": str(tmp_path / "x")}, f"file://{tmp_path / 'objects'}"),
                           ChildLedger())
    assert outcome.kind == "succeeded" and outcome.result == 10
    assert (tmp_path / "objects" / "media" / "in" / "x.bin").read_bytes() == b"x" * 10
