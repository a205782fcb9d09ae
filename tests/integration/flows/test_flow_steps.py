"""Each step type through a real engine process and a real worker: task, pass, choice, parallel, foreach, wait,
succeed, fail; mappings; retry with backoff; catch → goto; the execution timeout; destination records."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from taskservice.ledger.models import DELIVERIES
from taskservice.services import Services

pytestmark = pytest.mark.usefixtures("shared_worker", "shared_engine")


@pytest.fixture
def flow_name() -> str:
    return f"flow_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def functions(app_client: FlaskClient, deploy: Any) -> dict[str, str]:
    """Fresh step functions for this test (their names are what the definitions call)."""
    suffix = uuid.uuid4().hex[:8]
    names = {}
    for short, handler in {"double": "tests.flow_handlers:double", "add": "tests.flow_handlers:add",
                           "flaky": "tests.flow_handlers:flaky", "echo": "workers.handlers.echo:handler",
                           "fail_item": "tests.flow_handlers:fail_item"}.items():
        names[short] = f"{short}_{suffix}"
        deploy(app_client, names[short], handler, max_retries=0 if short != "echo" else 3, timeout_s=60)
    return names


def test_task_pass_choice_and_mappings(app_client: FlaskClient, deploy_flow: Any, start_execution: Any,
                                       wait_for_execution: Any, functions: dict[str, str], flow_name: str) -> None:
    definition = {"version": "v1", "type": "flow", "steps": [
        {"name": "prepare", "type": "pass", "inputMappings": [{"target": "a", "source": "$input.x"},
                                                              {"target": "b", "source": 10}]},
        {"name": "sum", "type": "task", "resourceArn": f"function:{functions['add']}",
         "inputMappings": [{"target": "a", "source": "$input.a"}, {"target": "b", "source": "$input.b"}],
         "outputMappings": [{"target": "total", "source": "$local.sum"}]},
        {"name": "route", "type": "choice", "choices": [{"condition": "$.total > 100", "goto": "big"}],
         "default": {"goto": "small"}},
        {"name": "big", "type": "pass", "inputMappings": [{"target": "size", "source": "big"}],
         "outputMappings": [{"target": "size", "source": "$local.size"}], "end": True},
        {"name": "small", "type": "pass", "inputMappings": [{"target": "size", "source": "small"}],
         "outputMappings": [{"target": "size", "source": "$local.size"}]},
    ]}
    deploy_flow(app_client, flow_name, definition)
    small = start_execution(app_client, flow_name, {"x": 5})
    big = start_execution(app_client, flow_name, {"x": 95})
    done = wait_for_execution(app_client, flow_name, small, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded", done
    assert done["output"] == {"x": 5, "a": 5, "b": 10, "total": 15, "size": "small"}  # pass merges its output
    by_path = {s["path"]: s for s in done["steps"]}
    assert by_path["sum"]["invocation"]["function"] == functions["add"]
    assert by_path["sum"]["input"] == {"a": 5, "b": 10}
    assert "big" not in by_path
    assert wait_for_execution(app_client, flow_name, big, {"Succeeded"})["output"]["size"] == "big"
    history = app_client.get(f"/v1/flows/{flow_name}/executions/{small}/history").get_json()["items"]
    types = [e["type"] for e in history]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert "TaskSubmitted" in types and "TaskSucceeded" in types


def test_parallel_and_foreach_collect_outputs_in_order(app_client: FlaskClient, deploy_flow: Any,
                                                       start_execution: Any, wait_for_execution: Any,
                                                       functions: dict[str, str], flow_name: str,
                                                       tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    definition = f"""
version: v1
type: flow
steps:
  - name: both
    type: parallel
    branches:
      - steps:
          - name: left
            type: task
            resourceArn: function:{functions['add']}
      - steps:
          - name: right
            type: pass
  - name: each
    type: foreach
    maxConcurrency: 2
    iterationMapping:
      collection: $.items
      item: item
    steps:
      - name: work
        type: task
        resourceArn: function:{functions['double']}
        inputMappings:
          - target: item
            source: $input.item
          - target: log
            source: $input.log
          - target: seconds
            source: 0.3
"""
    deploy_flow(app_client, flow_name, definition)
    name = start_execution(app_client, flow_name, {"a": 1, "b": 2, "items": [1, 2, 3, 4, 5], "log": str(log)})
    done = wait_for_execution(app_client, flow_name, name, {"Succeeded", "Failed"}, timeout_s=90)
    assert done["status"] == "Succeeded", done
    assert done["output"]["both"][0]["sum"] == 3  # a branch's output is its final state
    assert done["output"]["both"][1]["a"] == 1  # a pass branch: its input
    iterations = done["output"]["each"]
    assert [it["doubled"] for it in iterations] == [2, 4, 6, 8, 10]
    assert [(it["item"], it["index"]) for it in iterations] == [(i, i - 1) for i in [1, 2, 3, 4, 5]]
    assert all("items" not in it for it in iterations)  # an iteration does not carry the whole collection
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["item"] for r in runs) == [1, 2, 3, 4, 5]
    for run in runs:  # never more than maxConcurrency at once, by the handlers' own clocks
        overlapping = sum(1 for other in runs if other["start"] < run["end"] and run["start"] < other["end"])
        assert overlapping <= 2, runs


def test_retry_with_backoff_then_success(app_client: FlaskClient, deploy_flow: Any, start_execution: Any,
                                         wait_for_execution: Any, functions: dict[str, str], flow_name: str,
                                         tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [
        {"name": "try", "type": "task", "resourceArn": f"function:{functions['flaky']}",
         "retry": [{"errors": ["Flaky"], "intervalSeconds": 0.5, "maxAttempts": 3, "multiplier": 2}]}]})
    name = start_execution(app_client, flow_name, {"counter": str(counter), "succeed_after": 3})
    done = wait_for_execution(app_client, flow_name, name, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded", done
    assert done["output"]["calls"] == 3
    assert done["steps"][0]["attempts"] == 3
    times = [float(line.split()[1]) for line in counter.read_text().splitlines()]
    assert times[1] - times[0] >= 0.5 and times[2] - times[1] >= 1.0  # intervalSeconds × multiplier^n
    ids = {line.split()[0] for line in counter.read_text().splitlines()}
    assert len(ids) == 3  # each step attempt is its own invocation


def test_catch_goes_to_its_step_and_fail_step_fails(app_client: FlaskClient, deploy_flow: Any,
                                                    start_execution: Any, wait_for_execution: Any,
                                                    functions: dict[str, str], flow_name: str) -> None:
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [
        {"name": "work", "type": "task", "resourceArn": f"function:{functions['echo']}",
         "catch": [{"errors": ["RequestedFailure"], "goto": "cleanup"}]},
        {"name": "done", "type": "succeed"},
        {"name": "cleanup", "type": "pass"},
        {"name": "give_up", "type": "fail", "error": "CleanedUp", "cause": "work failed and was cleaned up"}]})
    caught = start_execution(app_client, flow_name, {"fail": "on purpose"})
    fine = start_execution(app_client, flow_name, {"ok": True})
    failed = wait_for_execution(app_client, flow_name, caught, {"Succeeded", "Failed"})
    assert failed["status"] == "Failed"
    assert (failed["errorType"], failed["error"]) == ("CleanedUp", "work failed and was cleaned up")
    statuses = {s["path"]: s["status"] for s in failed["steps"]}
    assert statuses == {"work": "Caught", "cleanup": "Succeeded", "give_up": "Failed"}
    assert failed["steps"][0]["attempts"] == 1  # the function's max_retries (3) does not stack on the step
    assert wait_for_execution(app_client, flow_name, fine, {"Succeeded", "Failed"})["status"] == "Succeeded"


def test_wait_step_and_execution_timeout(app_client: FlaskClient, deploy_flow: Any, start_execution: Any,
                                         wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [
        {"name": "pause", "type": "wait", "duration": 1}, {"name": "after", "type": "pass"}]})
    name = start_execution(app_client, flow_name, {})
    done = wait_for_execution(app_client, flow_name, name, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded"
    pause = next(s for s in done["steps"] if s["path"] == "pause")
    waited = (datetime.fromisoformat(pause["endedAt"]) - datetime.fromisoformat(pause["enteredAt"])).total_seconds()
    assert waited >= 1.0
    slow = f"{flow_name}_slow"
    deploy_flow(app_client, slow, {"version": "v1", "type": "flow", "timeoutSeconds": 1, "steps": [
        {"name": "pause", "type": "wait", "duration": 600}]})
    timed = start_execution(app_client, slow, {})
    out = wait_for_execution(app_client, slow, timed, {"TimedOut", "Succeeded", "Failed"})
    assert out["status"] == "TimedOut" and out["errorType"] == "Timeout"
    assert out["steps"][0]["status"] == "Stopped"


def test_execution_records_go_to_the_flow_destinations(app_client: FlaskClient, services: Services,
                                                       deploy_flow: Any, start_execution: Any,
                                                       wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [{"name": "p", "type": "pass"}]},
                on_success=f"queue:ok_{flow_name}")
    name = start_execution(app_client, flow_name, {"v": 1})
    wait_for_execution(app_client, flow_name, name, {"Succeeded"})
    with services.engine.connect() as conn:
        row = conn.execute(select(DELIVERIES).where(DELIVERIES.c.function == flow_name)).one()
    record = json.loads(row.record)
    assert row.invocation_id == name and row.destination == f"queue:ok_{flow_name}"
    assert record["requestContext"]["condition"] == ""
    assert json.loads(record["responsePayload"]) == {"v": 1} and json.loads(record["requestPayload"]) == {"v": 1}
