"""Warm executors through a real `taskservice worker` (one slot, a queue of its own): attempts share an executor,
are recycled by the configured bounds and after any failure, and a handler cannot reach the worker's connections."""
from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from taskservice.services import Services
from tests.support import Backend

WHOAMI = "tests.executor_handlers:whoami"


@pytest.fixture
def private(backend: Backend) -> Iterator[tuple[dict[str, Any], Services]]:
    """Settings overrides for a queue of this test's own, and services that ring it."""
    overrides = {"queue": f"{backend.settings.queue}_{uuid.uuid4().hex[:8]}"}
    services = Services.build(backend.settings.merged(**overrides))
    yield overrides, services
    services.close()


Run = Callable[..., Any]


@pytest.fixture
def run(private: tuple[dict[str, Any], Services], app_client: FlaskClient, deploy: Any,
        wait_for_status: Any) -> Run:
    """`run(handler, payload, status="Succeeded", **function_config)`: deploy a function for `handler` (no retries),
    submit one invocation on the private queue and wait for `status`; returns the invocation."""
    _, services = private

    def run_one(handler: str, payload: Any = None, status: str = "Succeeded", **config: Any) -> Any:
        name = f"fn_{uuid.uuid4().hex[:10]}"
        deploy(app_client, name, handler, max_retries=0, **config)
        submitted = services.submitter.submit(name, payload or {})
        return wait_for_status(services, name, submitted.invocation_id, {status})

    return run_one


def pid_of(run: Run) -> int:
    import json

    return int(json.loads(run(WHOAMI).result)["pid"])


def test_attempts_share_an_executor_until_the_attempt_bound(private: tuple[dict[str, Any], Services],
                                                           start_worker: Any, run: Run) -> None:
    overrides, _ = private
    worker = start_worker(concurrency=1, executor_max_attempts=2, **overrides)
    first, second, third = (pid_of(run) for _ in range(3))
    assert first == second, "two attempts in a row must run in the same warm executor"
    assert third != first, "the third attempt must run in a fresh executor (executor_max_attempts=2)"
    assert worker.proc.pid not in (first, third)


def test_an_executor_past_the_rss_bound_is_replaced(private: tuple[dict[str, Any], Services], start_worker: Any,
                                                    run: Run, process_gone: Any) -> None:
    import json

    overrides, _ = private
    start_worker(concurrency=1, executor_max_rss_mb=300, **overrides)
    idle = json.loads(run(WHOAMI).result)
    assert idle["rss_mb"] < 300, "the bound must be above an idle executor for this test to mean anything"
    big = json.loads(run(WHOAMI, {"allocate_mb": 400}).result)
    assert big["pid"] == idle["pid"] and big["rss_mb"] > 300
    assert process_gone(big["pid"])
    assert pid_of(run) != big["pid"]


@pytest.mark.parametrize("how, status, config", [
    ("raise", "Failed", {}), ("exit", "Failed", {}), ("sigkill", "Failed", {}),
    ("hang", "Failed", {"timeout_s": 1}), ("stop", "Stopped", {})])
def test_after_any_failure_the_next_attempt_runs_in_a_fresh_executor(
        private: tuple[dict[str, Any], Services], start_worker: Any, run: Run, app_client: FlaskClient,
        deploy: Any, eventually: Any, process_gone: Any, tmp_path: Path, how: str, status: str,
        config: dict[str, Any]) -> None:
    overrides, services = private
    start_worker(concurrency=1, **overrides)
    before = pid_of(run)
    pids = tmp_path / "pids"
    payload = {"pids": str(pids), "how": how}
    if how == "stop":
        name = f"fn_{uuid.uuid4().hex[:10]}"
        deploy(app_client, name, "tests.executor_handlers:crash", max_retries=0)
        iid = services.submitter.submit(name, payload).invocation_id
        eventually(lambda: pids.exists() and pids.read_text().strip(), what="the handler to start")
        assert app_client.post(f"/v1/functions/{name}/invocations/{iid}/stop").status_code == 202
        eventually(lambda: services.ledger.find_invocation(name, iid).status.value == status,
                   what=f"the invocation to be {status}")
    else:
        run("tests.executor_handlers:crash", payload, status=status, **config)
    assert int(pids.read_text()) == before, "the failing attempt ran in the warm executor"
    assert process_gone(before), f"the executor of an attempt that ended {how} must be killed"
    assert pid_of(run) != before


def test_a_timeout_kills_the_executor_with_its_whole_tree(private: tuple[dict[str, Any], Services],
                                                          start_worker: Any, run: Run, tmp_path: Path,
                                                          process_gone: Any) -> None:
    overrides, _ = private
    start_worker(concurrency=1, **overrides)
    pids = tmp_path / "pids"
    run("tests.executor_handlers:tree_and_hang", {"pids": str(pids)}, status="Failed", timeout_s=3)
    executor, child, grandchild = map(int, pids.read_text().split())
    for pid in (executor, child, grandchild):
        assert process_gone(pid), f"process {pid} outlived the timeout"
    assert pid_of(run) != executor


def test_an_executor_killed_while_idle_is_replaced(private: tuple[dict[str, Any], Services], start_worker: Any,
                                                   run: Run, process_gone: Any) -> None:
    overrides, _ = private
    start_worker(concurrency=1, **overrides)
    before = pid_of(run)
    os.kill(before, signal.SIGKILL)
    assert process_gone(before)
    assert pid_of(run) != before


def test_the_handler_sees_none_of_the_workers_connections(private: tuple[dict[str, Any], Services],
                                                          start_worker: Any, run: Run, backend: Backend) -> None:
    """The pool process holds the ledger (a Postgres socket, or the SQLite file) and the Celery main process the
    broker connection; no socket or file any of them holds is open in the handler."""
    import json

    overrides, _ = private
    start_worker(concurrency=1, **overrides)
    pid_of(run)  # the pool process has now claimed and persisted an invocation: its ledger connection is open
    seen = json.loads(run("tests.executor_handlers:descriptors").result)
    worker_side = {target for targets in seen["worker"].values() for target in targets
                   if target.startswith("socket:") or (target.startswith("/") and target != "/dev/null")}
    mine = {target for target in seen["mine"]
            if target.startswith("socket:") or (target.startswith("/") and target != "/dev/null")}
    if backend.name == "postgres":
        assert any(t.startswith("socket:") for t in worker_side), "the worker must hold connections to test"
    assert not mine & worker_side, f"the handler can reach the worker's {sorted(mine & worker_side)}"
    assert not [t for t in mine if t.endswith("ledger.db")]
    assert len([t for t in mine if t.startswith("socket:")]) <= 1, f"only the executor's own channel: {mine}"
