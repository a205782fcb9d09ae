"""End to end through a real worker process: success, retries, timeout, expiry, invalid handlers, logs, fan-out."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask.testing import FlaskClient

from taskservice.ledger.manager import utcnow
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import WorkerProcess


def test_success_records_result_timestamps_and_history(app_client: FlaskClient, services: Services,
                                                       shared_worker: WorkerProcess, fn_name: str,
                                                       deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.echo:handler")
    iid = submit(app_client, fn_name, {"hello": "world"})
    inv = wait_for_status(services, fn_name, iid, {"Succeeded"})
    assert inv.attempts == 1
    assert inv.condition == ""
    assert inv.created_at <= inv.started_at <= inv.finished_at
    detail = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}").get_json()
    assert detail["result"] == {"hello": "world"}
    assert detail["progress"]["percent"] == 100.0
    assert [t["to"] for t in detail["transitions"]] == ["Enqueued", "Running", "Succeeded"]
    logs = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs").get_json()["items"]
    assert any(f"echo for {iid}" in line["message"] for line in logs)


def test_failures_retry_with_backoff_then_fail(app_client: FlaskClient, services: Services,
                                               shared_worker: WorkerProcess, fn_name: str,
                                               deploy: Any, submit: Any, wait_for_status: Any, statuses: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.echo:handler", max_retries=2)
    iid = submit(app_client, fn_name, {"fail": "always"})
    inv = wait_for_status(services, fn_name, iid, {"Failed"})
    assert inv.attempts == 3
    assert inv.error_type == "RequestedFailure" and inv.error.startswith("always")
    assert inv.condition == "RetriesExhausted"
    assert statuses(services, fn_name, iid) == ["Enqueued", "Running", "Retrying", "Running", "Retrying",
                                                "Running", "Failed"]


def test_a_failure_then_success_ends_succeeded_with_both_attempts_logged(
        app_client: FlaskClient, services: Services, shared_worker: WorkerProcess, fn_name: str,
        tmp_path: Path, deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:fail_until")
    marker = tmp_path / "runs"
    iid = submit(app_client, fn_name, {"succeed_on": 2, "marker": str(marker)})
    inv = wait_for_status(services, fn_name, iid, {"Succeeded"})
    assert inv.attempts == 2
    assert len(marker.read_text().splitlines()) == 2
    lines = services.ledger.logs(inv.pk)
    assert [(line.attempt, line.message) for line in lines if "starting" in line.message] == [
        (1, "attempt 1 starting"), (2, "attempt 2 starting")]
    failure = [line for line in lines if line.level == "ERROR"]
    assert len(failure) == 1 and failure[0].attempt == 1 and "planned failure on attempt 1" in failure[0].message


def test_timeout_kills_handler_and_children(app_client: FlaskClient, services: Services,
                                            shared_worker: WorkerProcess, fn_name: str, tmp_path: Path,
                                            deploy: Any, submit: Any, wait_for_status: Any, process_gone: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:spawn_and_hang", timeout_s=1, max_retries=0)
    pids = tmp_path / "pids"
    iid = submit(app_client, fn_name, {"pids": str(pids)})
    inv = wait_for_status(services, fn_name, iid, {"Failed"})
    assert inv.error_type == "Timeout" and inv.condition == "RetriesExhausted"
    for pid in map(int, pids.read_text().split()):
        assert process_gone(pid), f"process {pid} outlived the timeout"


def test_a_handler_that_cannot_be_imported_is_invalid(app_client: FlaskClient, services: Services,
                                                      shared_worker: WorkerProcess, fn_name: str,
                                                      deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "no_such_package.module:handler")
    iid = submit(app_client, fn_name, {})
    inv = wait_for_status(services, fn_name, iid, {"Invalid"})
    assert inv.condition == "Invalid" and inv.error_type == "ModuleNotFoundError"
    assert inv.attempts == 1  # never retried: it can never run


def test_a_deleted_function_makes_waiting_invocations_invalid(app_client: FlaskClient, services: Services,
                                                              backend: Any, fn_name: str, start_worker: Any,
                                                              deploy: Any, wait_for_status: Any) -> None:
    # A private queue with no worker yet: the invocation waits while its function is deleted.
    private = {"queue": f"{backend.settings.queue}_del"}
    from taskservice.services import Services as _Services
    isolated = _Services.build(backend.settings.merged(**private))
    try:
        deploy(app_client, fn_name, "workers.handlers.noop:handler")
        iid = isolated.submitter.submit(fn_name, {}).invocation_id
        assert app_client.delete(f"/v1/functions/{fn_name}").status_code == 204
        start_worker(**private)
        inv = wait_for_status(services, fn_name, iid, {"Invalid"})
        assert inv.error_type == "FunctionNotFound"
    finally:
        isolated.close()


def test_over_age_invocations_expire_without_running(app_client: FlaskClient, services: Services, backend: Any,
                                                     fn_name: str, start_worker: Any, tmp_path: Path,
                                                     deploy: Any, wait_for_status: Any, eventually: Any) -> None:
    private = {"queue": f"{backend.settings.queue}_age"}
    from taskservice.services import Services as _Services
    isolated = _Services.build(backend.settings.merged(**private))
    marker = tmp_path / "runs"
    try:
        deploy(app_client, fn_name, "tests.handlers:counted", max_event_age_s=1)
        parked = isolated.submitter.submit(fn_name, {"marker": str(marker)})
        iid = parked.invocation_id
        # No worker on this queue yet: the event ages past its limit before one starts.
        eventually(lambda: utcnow() - parked.created_at > timedelta(seconds=1),
                   what="the waiting invocation to be older than max_event_age_s=1")
        start_worker(**private)
        inv = wait_for_status(services, fn_name, iid, {"Expired"})
        assert inv.condition == "EventAgeExceeded" and inv.attempts == 0
        assert not marker.exists()
    finally:
        isolated.close()


def test_logs_progress_and_child_output_are_stored(app_client: FlaskClient, services: Services,
                                                   shared_worker: WorkerProcess, fn_name: str,
                                                   deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:chatty")
    iid = submit(app_client, fn_name, {"lines": 4})
    wait_for_status(services, fn_name, iid, {"Succeeded"})
    logs = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs").get_json()["items"]
    messages = [line["message"] for line in logs]
    assert [m for m in messages if m.startswith("line ")] == ["line 0", "line 1", "line 2", "line 3"]
    assert "plain stdout line" in messages and "from a child process" in messages
    assert app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs?attempt=1").get_json()["items"] == logs


def test_fan_out_children_go_through_the_submission_path(app_client: FlaskClient, services: Services,
                                                         shared_worker: WorkerProcess, fn_name: str,
                                                         deploy: Any, submit: Any, wait_for_status: Any) -> None:
    child = f"{fn_name}_child"
    deploy(app_client, child, "workers.handlers.echo:handler")
    deploy(app_client, fn_name, "tests.handlers:fan_out")
    iid = submit(app_client, fn_name, {"child": child, "count": 3}, invocation_id="parent")
    inv = wait_for_status(services, fn_name, iid, {"Succeeded"})
    for n in range(3):
        kid = wait_for_status(services, child, f"parent-{n}", {"Succeeded"})
        assert json.loads(kid.result) == {"n": n}
    assert json.loads(inv.result) == ["parent-0", "parent-1", "parent-2"]


def test_concurrency_limit_holds(app_client: FlaskClient, services: Services, shared_worker: WorkerProcess,
                                 fn_name: str, tmp_path: Path, deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:counted", concurrency=1)
    ids = [submit(app_client, fn_name, {"seconds": 0.5}) for _ in range(2)]
    done = [wait_for_status(services, fn_name, iid, {"Succeeded"}) for iid in ids]
    first, second = sorted(done, key=lambda i: i.started_at)
    assert second.started_at >= first.finished_at  # never both running



def test_stopping_a_running_invocation_kills_its_process_tree(app_client: FlaskClient, services: Services,
                                                              shared_worker: WorkerProcess, fn_name: str,
                                                              tmp_path: Path, deploy: Any, submit: Any,
                                                              wait_for_status: Any, process_gone: Any,
                                                              eventually: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:spawn_and_hang", on_failure=None)
    pids = tmp_path / "pids"
    iid = submit(app_client, fn_name, {"pids": str(pids)})
    wait_for_status(services, fn_name, iid, {"Running"})
    eventually(lambda: pids.exists() and pids.read_text().strip(), timeout_s=10,
               what="the handler to record its and its child's pids")
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/stop")
    assert answer.status_code == 202 and answer.get_json()["status"] == "Stopping"
    inv = wait_for_status(services, fn_name, iid, {"Stopped"}, timeout_s=10)
    assert inv.condition == "Stopped" and inv.attempts == 1
    for pid in map(int, pids.read_text().split()):
        assert process_gone(pid), f"process {pid} outlived the stop"
    assert [t.to_status.value for t in services.ledger.transitions(inv.pk)][-2:] == ["Stopping", "Stopped"]
    letters = app_client.get(f"/v1/dead-letters?function={fn_name}").get_json()["items"]
    assert [d["condition"] for d in letters] == ["Stopped"]
