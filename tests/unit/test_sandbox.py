"""The sandbox runs real handlers in real forked processes; only the ledger side is replaced by a recorder."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from workers.sandbox import Job, run_isolated


class Recorder:
    def __init__(self, stop_after_ticks: int | None = None) -> None:
        self.logs: list[tuple[str, str]] = []
        self.progress: list[tuple[float, str]] = []
        self.submits: list[tuple[str, Any, str | None]] = []
        self.ticks = 0
        self.stop_after_ticks = stop_after_ticks
        self.pid: int | None = None

    def on_start(self, pid: int) -> None:
        self.pid = pid

    def on_log(self, at: str, level: str, message: str) -> None:
        self.logs.append((level, message))

    def on_progress(self, percent: float, message: str) -> None:
        self.progress.append((percent, message))

    def on_submit(self, function: str, payload: Any, invocation_id: str | None) -> dict[str, Any]:
        self.submits.append((function, payload, invocation_id))
        return {"invocationId": invocation_id or "generated", "status": "Enqueued"}

    def on_tick(self) -> str | None:
        self.ticks += 1
        if self.stop_after_ticks is not None and self.ticks >= self.stop_after_ticks:
            return "stop"
        return None


def job(handler: str, payload: Any = None, timeout_s: float = 10) -> Job:
    return Job(handler=handler, payload=json.dumps(payload), request_id="r-1", invocation_id="inv_1",
               function="f", attempt=1, timeout_s=timeout_s)


def test_result_logs_progress_and_output_reach_the_worker() -> None:
    hooks = Recorder()
    outcome = run_isolated(job("tests.handlers:chatty", {"lines": 2}), hooks)
    assert outcome.kind == "succeeded" and outcome.result == "ok"
    messages = [m for _, m in hooks.logs]
    assert "line 0" in messages and "line 1" in messages
    assert ("OUTPUT", "plain stdout line") in hooks.logs
    assert ("OUTPUT", "from a child process") in hooks.logs
    assert hooks.progress == [(50.0, "step 1"), (100.0, "step 2")]


def test_an_exception_is_a_failure_with_its_class_and_traceback() -> None:
    outcome = run_isolated(job("workers.handlers.echo:handler", {"fail": "boom"}), Recorder())
    assert outcome.kind == "failed"
    assert outcome.error_type == "RequestedFailure"
    assert outcome.error.startswith("boom")
    assert "Traceback" in outcome.error


@pytest.mark.parametrize("handler", ["no.such.module:handler", "workers.handlers.echo:missing",
                                     "workers.handlers.echo:RequestedFailure.nope"])
def test_a_handler_that_cannot_be_loaded_is_invalid(handler: str) -> None:
    outcome = run_isolated(job(handler), Recorder())
    assert outcome.kind == "invalid"
    assert handler in outcome.error


def test_a_result_that_is_not_json_is_a_failure() -> None:
    outcome = run_isolated(job("tests.handlers:returns_unserialisable"), Recorder())
    assert (outcome.kind, outcome.error_type) == ("failed", "ResultNotSerializable")


def test_timeout_kills_the_handler_and_its_children(tmp_path: Path, process_gone: Any) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    outcome = run_isolated(job("tests.handlers:spawn_and_hang", {"pids": str(pids)}, timeout_s=1), Recorder())
    assert outcome.kind == "timeout" and outcome.error_type == "Timeout"
    assert time.monotonic() - started < 10
    handler_pid, child_pid = map(int, pids.read_text().split())
    for pid in (handler_pid, child_pid):
        assert process_gone(pid), f"process {pid} survived the timeout"


def test_a_stop_from_the_worker_kills_the_tree(tmp_path: Path, process_gone: Any) -> None:
    pids = tmp_path / "pids"
    outcome = run_isolated(job("tests.handlers:spawn_and_hang", {"pids": str(pids)}), Recorder(stop_after_ticks=8),
                           tick_s=0.1)
    assert outcome.kind == "stopped"
    assert all(process_gone(int(p)) for p in pids.read_text().split())


def test_fan_out_requests_reach_the_submit_hook() -> None:
    hooks = Recorder()
    outcome = run_isolated(job("tests.handlers:fan_out", {"child": "g", "count": 3}), hooks)
    assert outcome.kind == "succeeded", outcome
    assert outcome.result == ["inv_1-0", "inv_1-1", "inv_1-2"]
    assert [s[0] for s in hooks.submits] == ["g", "g", "g"]


def test_sys_exit_in_a_handler_is_a_failure_not_a_crash() -> None:
    outcome = run_isolated(job("tests.handlers:exits"), Recorder())
    assert (outcome.kind, outcome.error_type) == ("failed", "SystemExit")


def test_no_zombie_is_left_behind() -> None:
    run_isolated(job("workers.handlers.noop:handler"), Recorder())
    children = psutil.Process(os.getpid()).children()
    assert not [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
