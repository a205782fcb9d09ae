"""The SDK's flow calls against a live API: typed results, typed errors (NotFoundError, ValidationError with the
step path, ConflictError with the existing execution), waiting with progress, and a start resent through a 503
with the same name, including the case where the first try was accepted and its answer lost."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from taskservice.client import ApiError, Client, ConflictError, NotFoundError, ValidationError, WaitTimeout
from taskservice.flow_client import ExecutionInfo
from tests.support import ApiProcess

pytestmark = pytest.mark.usefixtures("shared_worker", "shared_engine")


@pytest.fixture
def client(live_api: ApiProcess) -> Client:
    return Client(live_api.base, retry_for_s=10)


@pytest.fixture
def flow(client: Client, app_client: FlaskClient, deploy: Any) -> str:
    """A flow of one task (echo) and a wait, under a fresh name."""
    name = f"sdk_{uuid.uuid4().hex[:8]}"
    deploy(app_client, f"echo_{name}", "workers.handlers.echo:handler", max_retries=0)
    client.put_flow(name, {"version": "v1", "type": "flow", "steps": [
        {"name": "echo", "type": "task", "resourceArn": f"function:echo_{name}"},
        {"name": "pause", "type": "wait", "duration": 0.5}]}, description="echo then wait")
    return name


def test_typed_flow_and_execution_round_trip(client: Client, flow: str) -> None:
    info = client.get_flow(flow)
    assert info.name == flow and info.description == "echo then wait" and info.definition["steps"][0]["name"]
    assert flow in [f.name for f in client.list_flows()]
    started = client.start_execution(flow, {"x": 1}, name="typed_1")
    assert (started.execution_name, started.flow, started.status) == ("typed_1", flow, "Running")
    seen: list[ExecutionInfo] = []
    done = client.wait_execution(flow, "typed_1", timeout_s=60, progress=seen.append)
    assert done.succeeded and done.ended and done.output == {"x": 1}
    assert [s.path for s in done.steps] == ["echo", "pause"] and done.steps[0].invocation_id
    assert seen and seen[-1].status == "Succeeded"
    page = client.history(flow, "typed_1")
    assert page.items[0].type == "ExecutionStarted" and page.items[-1].type == "ExecutionSucceeded"
    assert client.history(flow, "typed_1", after=page.last).items == []
    listed = client.list_executions(flow=flow, status=["Succeeded", "Failed"])
    assert [e.name for e in listed.items] == ["typed_1"] and listed.next_cursor is None
    assert [e.name for e in client.iter_executions(flow=flow)] == ["typed_1"]


def test_typed_errors(client: Client, flow: str) -> None:
    with pytest.raises(NotFoundError):
        client.get_flow(f"{flow}_absent")
    with pytest.raises(NotFoundError):
        client.get_execution(flow, "never_started")
    with pytest.raises(NotFoundError):
        client.start_execution(f"{flow}_absent", {})
    with pytest.raises(ValidationError) as invalid:
        client.put_flow(f"{flow}_bad", "version: v1\ntype: flow\nsteps:\n  - name: a\n    type: pass\n    goto: zz\n")
    assert invalid.value.status == 422 and invalid.value.path == "a.goto"
    with pytest.raises(NotFoundError):
        client.get_flow(f"{flow}_bad")  # nothing was written
    with pytest.raises(ValidationError):
        client.start_execution(flow, [1, 2])  # type: ignore[arg-type]  # the input must be an object

    client.start_execution(flow, {"first": True}, name="taken")
    with pytest.raises(ConflictError) as duplicate:
        client.start_execution(flow, {"second": True}, name="taken")
    existing = duplicate.value.existing_execution
    assert existing is not None and (existing.execution_name, existing.flow) == ("taken", flow)
    client.wait_execution(flow, "taken", timeout_s=60)
    with pytest.raises(ConflictError) as ended:
        client.stop_execution(flow, "taken")
    assert ended.value.existing_execution is None and "Succeeded" in str(ended.value)
    with pytest.raises(ConflictError):
        client.redrive_execution(flow, "taken")


def test_wait_execution_times_out_with_what_it_saw(client: Client, flow: str) -> None:
    client.put_flow(f"{flow}_slow", {"version": "v1", "type": "flow", "steps": [
        {"name": "pause", "type": "wait", "duration": 60}]})
    client.start_execution(f"{flow}_slow", name="slow")
    with pytest.raises(WaitTimeout) as waited:
        client.wait_execution(f"{flow}_slow", "slow", timeout_s=0.5)
    assert isinstance(waited.value.last, ExecutionInfo) and waited.value.last.status == "Running"
    assert client.stop_execution(f"{flow}_slow", "slow").status in ("Stopping", "Stopped")


def _unavailable() -> ApiError:
    return ApiError(503, "LedgerUnavailable", "briefly away", {"error": {}}, retry_after="0.1")


def test_a_start_is_resent_through_503_with_the_same_name(client: Client, flow: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = client._request_once
    sent: list[str | None] = []

    def refuse_first(method: str, path: str, **kwargs: Any) -> Any:
        if method == "POST" and path.endswith("/executions"):
            sent.append((kwargs.get("headers") or {}).get("X-Execution-Name"))
            if len(sent) == 1:
                raise _unavailable()
        return real(method, path, **kwargs)

    monkeypatch.setattr(client, "_request_once", refuse_first)
    started = client.start_execution(flow, {"n": 1})
    assert len(sent) == 2 and sent[0] == sent[1] == started.execution_name  # chosen once, sent twice


def test_a_start_whose_answer_was_lost_is_answered_by_the_409(client: Client, flow: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = client._request_once
    tries = []

    def lose_first_answer(method: str, path: str, **kwargs: Any) -> Any:
        answer = real(method, path, **kwargs)
        if method == "POST" and path.endswith("/executions"):
            tries.append(answer)
            if len(tries) == 1:
                raise _unavailable()  # accepted, but the caller never heard
        return answer

    monkeypatch.setattr(client, "_request_once", lose_first_answer)
    started = client.start_execution(flow, {"n": 2}, name="lost_answer")
    assert started.execution_name == "lost_answer" and len(tries) == 1  # the second try was the 409
    assert client.get_execution(flow, "lost_answer").input == {"n": 2}
    with pytest.raises(ConflictError):  # someone else's start with the name (other input) is still refused
        client.start_execution(flow, {"n": 3}, name="lost_answer")
