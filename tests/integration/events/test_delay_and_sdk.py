"""Delayed invocations (X-Invocation-Delay, `invoke --delay`) and the Python SDK (`taskservice.Client`) against a
live `taskservice api` with auth, on both backends."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

import taskservice
from taskservice.cli import cli
from taskservice.client import AuthError, ConflictError, NotFoundError, ValidationError, WaitTimeout
from taskservice.ledger.queries import InvocationFilter
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import WorkerProcess


def _started(services: Services, fn: str, iid: str) -> datetime:
    inv = services.ledger.get_invocation(fn, iid)
    running = [t.at for t in services.ledger.transitions(inv.pk) if t.to_status.value == "Running"]
    assert running, "never ran"
    return running[0]


def test_a_delayed_invocation_starts_no_earlier_than_its_delay(
        app_client: FlaskClient, services: Services, worker: WorkerProcess, fn_name: str,
        deploy_fn: Callable[..., Any], await_status: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations", json={"n": 1},
                             headers={"X-Invocation-Id": "later", "X-Invocation-Delay": "3"})
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "Enqueued"
    shown = app_client.get(f"/v1/functions/{fn_name}/invocations/later").get_json()
    assert shown["startsAt"] and shown["nextAttemptAt"] == shown["startsAt"]
    page = app_client.get(f"/invocations/{fn_name}/later")  # the console (open in these tests) says when
    assert page.status_code == 200 and b"starts-in" in page.data
    inv = await_status(fn_name, "later", {"Succeeded"}, timeout_s=30)
    assert (_started(services, fn_name, "later") - inv.created_at).total_seconds() >= 3.0


def test_stopping_a_delayed_invocation_before_it_starts_means_it_never_runs(
        app_client: FlaskClient, services: Services, worker: WorkerProcess, fn_name: str,
        deploy_fn: Callable[..., Any], await_status: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations", json={},
                             headers={"X-Invocation-Id": "never", "X-Invocation-Delay": "2"})
    assert answer.status_code == 202
    stopped = app_client.post(f"/v1/functions/{fn_name}/invocations/never/stop")
    assert stopped.status_code == 202 and stopped.get_json()["status"] == "Stopped"
    # a control invocation submitted after it with a longer delay runs, so the doorbell of the stopped one was seen
    app_client.post(f"/v1/functions/{fn_name}/invocations", json={},
                    headers={"X-Invocation-Id": "control", "X-Invocation-Delay": "2.5"})
    await_status(fn_name, "control", {"Succeeded"})
    inv = services.ledger.get_invocation(fn_name, "never")
    assert inv.status.value == "Stopped" and inv.attempts == 0


@pytest.mark.parametrize("delay", ["-1", "3601", "soon", "nan", "1e9"])
def test_a_delay_out_of_range_is_refused_and_writes_nothing(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        delay: str) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations", json={},
                             headers={"X-Invocation-Delay": delay})
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "InvalidDelay" and "X-Invocation-Delay" in error["message"]
    assert services.ledger.list_invocations(InvocationFilter(function=fn_name), limit=5).items == []


# --- the SDK against `taskservice api` with auth -------------------------------------------------------------------
@pytest.fixture
def sdk(live_api: str, services: Services, fn_name: str) -> taskservice.Client:
    _, secret = services.tokens.create(f"{fn_name}_sdk", "admin")
    return taskservice.Client(live_api, token=secret)


def test_the_sdk_has_every_verb_with_typed_results(
        sdk: taskservice.Client, live_api: str, worker: WorkerProcess, services: Services,
        fn_name: str) -> None:
    sdk.put_function(fn_name, {"handler": "tests.handlers:chatty", "max_retries": 0})
    submitted = sdk.invoke(fn_name, {"lines": 3}, invocation_id="sdk-1")
    assert submitted.invocation_id == "sdk-1" and submitted.status == "Enqueued" and submitted.function == fn_name
    seen: list[tuple[str, float | None]] = []
    final = sdk.wait(fn_name, "sdk-1", progress=lambda inv: seen.append((inv.status, inv.progress_percent)),
                     timeout_s=60)
    assert final.succeeded and final.result == "ok" and final.attempts == 1
    assert seen[-1][0] == "Succeeded" and len(seen) >= 2
    assert sdk.get(fn_name, "sdk-1").status == "Succeeded"
    lines = sdk.log_lines(fn_name, "sdk-1")
    assert any(line.message == "line 0" for line in lines) and all(line.attempt == 1 for line in lines)
    page = sdk.list(function=fn_name, status=["Succeeded"], limit=10)
    assert [i.invocation_id for i in page.items] == ["sdk-1"] and page.next_cursor is None
    assert [i.invocation_id for i in sdk.iter_invocations(function=fn_name)] == ["sdk-1"]

    # retry a success explicitly; stop a long one; a failure and its replay
    again = sdk.retry_invocation(fn_name, "sdk-1", include_succeeded=True)
    assert again.status == "Enqueued"
    assert sdk.wait(fn_name, "sdk-1", timeout_s=60).attempts == 2
    sdk.put_function(f"{fn_name}_slow", {"handler": "tests.handlers:counted"})
    sdk.invoke(f"{fn_name}_slow", {"seconds": 60}, invocation_id="slow", delay_s=30)
    stopped = sdk.stop_invocation(f"{fn_name}_slow", "slow")
    assert stopped.status == "Stopped"
    sdk.put_function(f"{fn_name}_bad", {"handler": "tests.handlers:fail_until", "max_retries": 0})
    sdk.invoke(f"{fn_name}_bad", {"succeed_on": 2}, invocation_id="bad")
    failed = sdk.wait(f"{fn_name}_bad", "bad", timeout_s=60)
    assert failed.status == "Failed" and failed.error_type == "RuntimeError"
    letters = sdk.dead_letters(function=f"{fn_name}_bad")["items"]
    assert len(letters) == 1
    replayed = sdk.replay(letters[0]["id"], payload={"succeed_on": 1})
    assert replayed.submitted is not None and replayed.submitted.invocation_id.startswith("replay_")
    assert sdk.wait(f"{fn_name}_bad", replayed.submitted.invocation_id, timeout_s=60).succeeded
    many = sdk.replay(function=f"{fn_name}_bad")
    assert [o["outcome"] for o in many.outcomes] == ["duplicate"]


def test_the_sdk_raises_typed_errors(sdk: taskservice.Client, live_api: str, fn_name: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        sdk.invoke(f"{fn_name}_nope", {})
    assert missing.value.status == 404 and missing.value.code == "FunctionNotFound"
    with pytest.raises(ValidationError) as invalid:
        sdk.put_function(fn_name, {"handler": "not a handler", "timeout_s": 0})
    assert invalid.value.status == 422 and "timeout_s" in str(invalid.value)
    sdk.put_function(fn_name, {"handler": "workers.handlers.echo:handler"})
    sdk.invoke(fn_name, {"a": 1}, invocation_id="dup", delay_s=60)
    with pytest.raises(ConflictError) as duplicate:
        sdk.invoke(fn_name, {"a": 2}, invocation_id="dup")
    existing = duplicate.value.existing
    assert existing is not None and existing.invocation_id == "dup" and existing.payload == {"a": 1}
    sdk.stop_invocation(fn_name, "dup")
    with pytest.raises(ConflictError):
        sdk.stop_invocation(fn_name, "dup")  # already ended
    with pytest.raises(ValidationError) as delay:
        sdk.invoke(fn_name, {}, delay_s=7200)
    assert delay.value.code == "InvalidDelay"
    with pytest.raises(AuthError):
        taskservice.Client(live_api, token="tsk_forged").list()
    with pytest.raises(WaitTimeout):
        sdk.invoke(fn_name, {}, invocation_id="late", delay_s=60)
        sdk.wait(fn_name, "late", timeout_s=0.5)


def test_invoke_delay_on_the_cli(live_api: str, sdk: taskservice.Client, services: Services, fn_name: str) -> None:
    sdk.put_function(fn_name, {"handler": "workers.handlers.echo:handler"})
    token = sdk.session.headers["Authorization"].split(" ", 1)[1]
    out = CliRunner().invoke(cli, ["--api-url", live_api, "invoke", fn_name, "-e", "{}", "--invocation-id", "cli-1",
                                   "--delay", "120"], env={"TASKSERVICE_TOKEN": token})
    assert out.exit_code == 0, out.output
    assert "starts in 120s" in out.output
    inv = services.ledger.get_invocation(fn_name, "cli-1")
    assert inv.not_before is not None and (inv.not_before - inv.created_at).total_seconds() >= 119
    bad = CliRunner().invoke(cli, ["--api-url", live_api, "invoke", fn_name, "-e", "{}", "--delay", "-5"],
                             env={"TASKSERVICE_TOKEN": token})
    assert bad.exit_code == 1 and "X-Invocation-Delay" in bad.output
