"""Stop and redrive of executions, and every bad input of the flow API: a clear 4xx and nothing written."""
from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from taskservice.clock import utcnow
from taskservice.ledger.models import EXECUTIONS, FLOW_EVENTS, FRAMES, STEP_RUNS
from taskservice.services import Services

pytestmark = pytest.mark.usefixtures("shared_worker", "shared_engine")


@pytest.fixture
def flow_name() -> str:
    return f"flow_{uuid.uuid4().hex[:10]}"


def _task_flow(function: str, **step: Any) -> dict[str, Any]:
    return {"version": "v1", "type": "flow",
            "steps": [{"name": "work", "type": "task", "resourceArn": f"function:{function}", **step}]}


def test_stop_kills_the_running_step_handlers(app_client: FlaskClient, deploy: Any, deploy_flow: Any,
                                              start_execution: Any, wait_for_execution: Any, flow_name: str,
                                              fn_name: str, tmp_path: Path, eventually: Any,
                                              process_gone: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:spawn_and_hang", timeout_s=600)
    deploy_flow(app_client, flow_name, _task_flow(fn_name))
    pids = tmp_path / "pids"
    name = start_execution(app_client, flow_name, {"pids": str(pids)})
    handler, child = map(int, eventually(lambda: pids.exists() and pids.read_text().split(),
                                         what="the step handler to start its child process"))
    answer = app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop")
    assert answer.status_code == 202 and answer.get_json()["status"] == "Stopping"
    done = wait_for_execution(app_client, flow_name, name, {"Stopped", "Failed", "Succeeded"})
    assert done["status"] == "Stopped" and done["steps"][0]["status"] == "Stopped"
    assert process_gone(handler) and process_gone(child)
    again = app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "ExecutionStateConflict"


@pytest.mark.parametrize("concurrency", [10, 2])
def test_redrive_reruns_only_the_failed_iterations(app_client: FlaskClient, deploy: Any, deploy_flow: Any,
                                                   start_execution: Any, wait_for_execution: Any, flow_name: str,
                                                   fn_name: str, tmp_path: Path, concurrency: int) -> None:
    deploy(app_client, fn_name, "tests.flow_handlers:fail_item", max_retries=0)
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [
        {"name": "each", "type": "foreach", "maxConcurrency": concurrency,
         "iterationMapping": {"collection": "$.items", "item": "item"},
         "steps": [{"name": "work", "type": "task", "resourceArn": f"function:{fn_name}"}]},
        {"name": "after", "type": "pass"}]})
    bad, calls = tmp_path / "bad", tmp_path / "calls"
    bad.write_text("2\n")
    name = start_execution(app_client, flow_name, {"items": list(range(6)), "bad": str(bad), "calls": str(calls)})
    failed = wait_for_execution(app_client, flow_name, name, {"Failed", "Succeeded"}, timeout_s=90)
    assert failed["status"] == "Failed" and failed["errorType"] == "Flaky", failed
    first = calls.read_text().split()
    assert "2" in first
    bad.write_text("")
    answer = app_client.post(f"/v1/flows/{flow_name}/executions/{name}/redrive")
    assert answer.status_code == 202 and answer.get_json()["status"] == "Running"
    done = wait_for_execution(app_client, flow_name, name, {"Failed", "Succeeded"}, timeout_s=90)
    assert done["status"] == "Succeeded", done
    assert [it["ok"] for it in done["output"]["each"]] == list(range(6))
    every = calls.read_text().split()
    assert sorted(every) == sorted(first + [i for i in map(str, range(6)) if i not in first or i == "2"])
    assert every.count("2") == 2 and all(every.count(str(i)) == 1 for i in range(6) if i != 2)
    again = app_client.post(f"/v1/flows/{flow_name}/executions/{name}/redrive")
    assert again.status_code == 409


# --- bad input ------------------------------------------------------------------------------------------------
_BAD_DEFINITIONS = [
    ({"version": "v1", "type": "flow", "steps": [{"name": "a", "type": "teleport"}]}, "a", "teleport"),
    ({"version": "v1", "type": "flow", "steps": [
        {"name": "a", "type": "choice", "choices": [{"condition": "$.x == 1", "goto": "nowhere"}]}]}, "a",
     "nowhere"),
    ({"version": "v1", "type": "flow", "steps": [{"name": "a", "type": "pass"}, {"name": "a", "type": "pass"}]},
     "steps[1]", "duplicate"),
    ({"version": "v1", "type": "flow", "steps": [
        {"name": "a", "type": "pass"},
        {"name": "b", "type": "choice", "choices": [{"condition": "$.x == 1", "goto": "a"}],
         "default": {"goto": "a"}}]},
     "", "end"),
    ({"version": "v1", "type": "flow", "steps": [
        {"name": "a", "type": "pass", "inputMappings": [{"target": "x", "source": "$input..y"}]}]}, "a", "source"),
    ({"version": "v1", "type": "flow", "steps": [
        {"name": "a", "type": "choice", "choices": [{"condition": "__import__('os').system('id')", "goto": "b"}]},
        {"name": "b", "type": "pass"}]}, "a", "condition"),
    ({"version": "v1", "type": "flow", "steps": [
        {"name": "f", "type": "foreach", "maxConcurrency": 5000, "iterationMapping": {"collection": "$.items"},
         "steps": [{"name": "s", "type": "pass"}]}]}, "f", "maxConcurrency"),
    ({"version": "v1", "type": "flow", "timeoutSeconds": 700000, "steps": [{"name": "a", "type": "pass"}]},
     "timeoutSeconds", "timeoutSeconds"),
    ("version: v1\ntype: flow\nsteps:\n  - name: a\n    type: [pass\n", "", "line"),
]


@pytest.mark.parametrize(("definition", "path", "word"), _BAD_DEFINITIONS,
                         ids=["unknown-type", "missing-goto", "duplicate", "endless-cycle", "bad-path",
                              "unsafe-condition", "limit", "timeout", "yaml-syntax"])
def test_an_invalid_definition_is_422_naming_the_step_and_writes_nothing(
        app_client: FlaskClient, flow_name: str, definition: Any, path: str, word: str) -> None:
    answer = app_client.put(f"/v1/flows/{flow_name}", json={"definition": definition})
    assert answer.status_code == 422, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "InvalidFlowDefinition"
    assert error["message"].startswith(path) and word in error["message"], error
    assert app_client.get(f"/v1/flows/{flow_name}").status_code == 404


def test_bad_execution_requests(app_client: FlaskClient, services: Services, deploy: Any, deploy_flow: Any,
                                start_execution: Any, wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [{"name": "p", "type": "pass"}]})
    base = f"/v1/flows/{flow_name}/executions"
    big = app_client.post(base, json={"blob": "x" * (256 * 1024)})
    assert big.status_code == 413
    not_object = app_client.post(base, json=[1, 2])
    assert not_object.status_code == 400
    bad_name = app_client.post(base, json={}, headers={"X-Execution-Name": "has space"})
    assert bad_name.status_code == 400
    assert app_client.post("/v1/flows/no_such_flow/executions", json={}).status_code == 404
    assert services.flows.list_executions(_only(flow_name))[0] == []  # none of those wrote anything
    name = start_execution(app_client, flow_name, {"n": 1}, name="nightly-1")
    duplicate = app_client.post(base, json={"n": 2}, headers={"X-Execution-Name": "nightly-1"})
    assert duplicate.status_code == 409
    assert duplicate.get_json()["execution"]["executionName"] == name
    wait_for_execution(app_client, flow_name, name, {"Succeeded"})
    assert app_client.post(f"{base}/{name}/redrive").status_code == 409
    assert app_client.get(f"{base}/nope").status_code == 404
    assert app_client.get(f"{base}/{name}/history?after=-1").status_code == 400
    assert app_client.get("/v1/executions?status=Sleeping").status_code == 400
    listed = app_client.get(f"/v1/executions?flow={flow_name}").get_json()["items"]
    assert [e["executionName"] for e in listed] == [name]


def _only(flow: str) -> Any:
    from taskservice.ledger.flows import ExecutionFilter

    return ExecutionFilter(flow=flow)


def test_ended_executions_go_with_the_retention(app_client: FlaskClient, services: Services, deploy_flow: Any,
                                                start_execution: Any, wait_for_execution: Any,
                                                flow_name: str) -> None:
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [{"name": "p", "type": "pass"}]})
    name = start_execution(app_client, flow_name, {})
    wait_for_execution(app_client, flow_name, name, {"Succeeded"})
    execution = services.flows.get_execution(flow_name, name)
    with services.engine.begin() as conn:
        conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == execution.pk)
                     .values(finished_at=utcnow() - timedelta(days=30)))
    services.ledger.reap(retention_s=7 * 86400)
    assert app_client.get(f"/v1/flows/{flow_name}/executions/{name}").status_code == 404
    with services.engine.connect() as conn:
        for table in (FRAMES, STEP_RUNS, FLOW_EVENTS):
            assert conn.execute(select(func.count()).select_from(table)
                                .where(table.c.execution_pk == execution.pk)).scalar() == 0
