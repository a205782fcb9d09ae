"""Stop and retry through the API, on both backends (SQLite + filesystem broker; Postgres + RabbitMQ), with real
worker processes: while Enqueued, while Running (process tree killed), while every worker is down, fan-out cascade,
retries as new attempts under the same id, bulk actions by filter, and bad input that changes nothing."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend, WorkerProcess


@pytest.fixture
def private_queue(backend: Backend) -> Iterator[tuple[dict[str, str], Services]]:
    """A queue no running worker listens on, and services that submit to it: 'every worker is down' for these
    invocations while the rest of the suite keeps its shared worker."""
    private = {"queue": f"{backend.settings.queue}_ctl"}
    isolated = Services.build(backend.settings.merged(**private))
    yield private, isolated
    isolated.close()


# --- stop ---------------------------------------------------------------------------------------------------------
def test_stop_while_enqueued_with_no_worker_means_it_never_runs(
        app_client: FlaskClient, services: Services, private_queue: tuple[dict[str, str], Services],
        start_worker: Any, fn_name: str, tmp_path: Path, deploy: Any, settle: Any) -> None:
    private, isolated = private_queue
    deploy(app_client, fn_name, "tests.handlers:counted")
    marker = tmp_path / "runs"
    iid = isolated.submitter.submit(fn_name, {"marker": str(marker)}).invocation_id
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/stop")
    assert answer.status_code == 202 and answer.get_json()["status"] == "Stopped"
    worker = start_worker(**private)  # its doorbell is still queued: the worker gets it and must not run it
    settle(worker, isolated, fn_name)  # a sentinel queued behind the doorbell has run: the doorbell was handled
    inv = services.ledger.get_invocation(fn_name, iid)
    assert inv.status.value == "Stopped" and inv.attempts == 0 and inv.condition == "Stopped"
    assert not marker.exists()
    letters = app_client.get(f"/v1/dead-letters?function={fn_name}").get_json()["items"]
    assert [d["record"]["requestContext"]["condition"] for d in letters] == ["Stopped"]


def test_stop_while_every_worker_is_down_takes_effect(
        app_client: FlaskClient, services: Services, private_queue: tuple[dict[str, str], Services],
        start_worker: Any, fn_name: str, tmp_path: Path,
        deploy: Any, wait_for_status: Any, statuses: Any, process_gone: Any, eventually: Any) -> None:
    private, isolated = private_queue
    deploy(app_client, fn_name, "tests.handlers:spawn_and_hang", max_retries=3)
    pids = tmp_path / "pids"
    worker: WorkerProcess = start_worker(**private)
    iid = isolated.submitter.submit(fn_name, {"pids": str(pids), "marker": str(tmp_path / "runs")}).invocation_id
    # The handler writes its pids file whole and last, after marking its run: once the file is there, both pids are
    # in it and the run is marked, so killing the worker now cannot cut the handler off before either.
    handler_pids = [int(p) for p in eventually(lambda: pids.exists() and pids.read_text().strip(), timeout_s=15,
                                               what="the handler to record its and its child's pids").split()]
    assert len(handler_pids) == 2 and (tmp_path / "runs").read_text().count("attempt=1 ") == 1
    worker.kill()  # SIGKILL: no worker of this queue is left
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/stop")
    assert answer.status_code == 202 and answer.get_json()["status"] == "Stopping"
    for pid in handler_pids:
        assert process_gone(pid), f"process {pid} outlived its worker"
    # The lease lapses with nobody heartbeating; a reaper ends the stop instead of handing out a new attempt.
    start_worker(**private)
    inv = wait_for_status(services, fn_name, iid, {"Stopped"}, timeout_s=20)
    assert inv.attempts == 1 and inv.condition == "Stopped"
    assert (tmp_path / "runs").read_text().count("attempt=") == 1
    assert statuses(services, fn_name, iid)[-2:] == ["Stopping", "Stopped"]


def test_stopping_a_parent_stops_its_fan_out_children(app_client: FlaskClient, services: Services,
                                                     shared_worker: WorkerProcess, fn_name: str,
                                                     deploy: Any, submit: Any, wait_for_status: Any) -> None:
    child = f"{fn_name}_child"
    deploy(app_client, child, "tests.handlers:counted")
    deploy(app_client, fn_name, "tests.handlers:fan_out_then_hang")
    iid = submit(app_client, fn_name, {"child": child, "count": 2, "child_event": {"seconds": 300}},
                 invocation_id="parent")
    wait_for_status(services, child, "parent-1", {"Enqueued", "Running"})
    family = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}").get_json()
    assert [c["invocationId"] for c in family["children"]] == ["parent-0", "parent-1"]
    kid = app_client.get(f"/v1/functions/{child}/invocations/parent-0").get_json()
    assert kid["parent"]["invocationId"] == "parent" and kid["parent"]["function"] == fn_name
    assert app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/stop").status_code == 202
    wait_for_status(services, fn_name, iid, {"Stopped"}, timeout_s=15)
    for n in range(2):
        assert wait_for_status(services, child, f"parent-{n}", {"Stopped"}, timeout_s=15).condition == "Stopped"


# --- retry --------------------------------------------------------------------------------------------------------
def test_retry_runs_a_new_attempt_under_the_same_id_and_keeps_history(
        app_client: FlaskClient, services: Services, shared_worker: WorkerProcess, fn_name: str,
        tmp_path: Path, deploy: Any, submit: Any, wait_for_status: Any, statuses: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:fail_until", max_retries=0)
    iid = submit(app_client, fn_name, {"succeed_on": 2, "marker": str(tmp_path / "runs")}, invocation_id="again")
    failed = wait_for_status(services, fn_name, iid, {"Failed"})
    assert failed.attempts == 1 and failed.error_type == "RuntimeError"
    answer = app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/retry")
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "Enqueued" and body["invocationId"] == "again" and body["error"] is None
    done = wait_for_status(services, fn_name, iid, {"Succeeded"})
    assert done.attempts == 2 and done.request_id == failed.request_id
    assert statuses(services, fn_name, iid) == ["Enqueued", "Running", "Failed", "Enqueued", "Running", "Succeeded"]
    first = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs?attempt=1").get_json()["items"]
    second = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs?attempt=2").get_json()["items"]
    assert any("planned failure on attempt 1" in line["message"] for line in first)
    assert any("attempt 2 starting" in line["message"] for line in second)
    assert not any("planned failure" in line["message"] for line in second)


def test_a_retried_run_gets_its_own_retry_budget(app_client: FlaskClient, services: Services,
                                                 shared_worker: WorkerProcess, fn_name: str,
                                                 deploy: Any, submit: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.echo:handler", max_retries=1)
    iid = submit(app_client, fn_name, {"fail": "always"})
    assert wait_for_status(services, fn_name, iid, {"Failed"}).attempts == 2
    assert app_client.post(f"/v1/functions/{fn_name}/invocations/{iid}/retry").status_code == 202
    wait_for_status(services, fn_name, iid, {"Running", "Retrying", "Failed"})
    inv = wait_for_status(services, fn_name, iid, {"Failed"})
    assert inv.attempts == 4 and inv.condition == "RetriesExhausted"
    letters = app_client.get(f"/v1/dead-letters?function={fn_name}").get_json()["items"]
    assert [d["record"]["requestContext"]["approximateInvokeCount"] for d in letters] == [4, 2]


def test_retry_refuses_live_and_succeeded_invocations_unless_asked(
        app_client: FlaskClient, services: Services, shared_worker: WorkerProcess, fn_name: str,
        tmp_path: Path, deploy: Any, submit: Any, wait_for_status: Any, statuses: Any) -> None:
    deploy(app_client, fn_name, "tests.handlers:counted")
    done = submit(app_client, fn_name, {"marker": str(tmp_path / "runs")})
    wait_for_status(services, fn_name, done, {"Succeeded"})
    history = statuses(services, fn_name, done)
    refused = app_client.post(f"/v1/functions/{fn_name}/invocations/{done}/retry")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "NotRetryable"
    assert "explicitly" in refused.get_json()["error"]["message"]
    assert statuses(services, fn_name, done) == history
    again = app_client.post(f"/v1/functions/{fn_name}/invocations/{done}/retry", json={"includeSucceeded": True})
    assert again.status_code == 202
    wait_for_status(services, fn_name, done, {"Running", "Succeeded"})
    assert wait_for_status(services, fn_name, done, {"Succeeded"}).attempts == 2
    assert (tmp_path / "runs").read_text().count("attempt=") == 2
    running = submit(app_client, fn_name, {"seconds": 300})
    wait_for_status(services, fn_name, running, {"Running"})
    live = app_client.post(f"/v1/functions/{fn_name}/invocations/{running}/retry")
    assert live.status_code == 409 and "Running" in live.get_json()["error"]["message"]
    app_client.post(f"/v1/functions/{fn_name}/invocations/{running}/stop")
    wait_for_status(services, fn_name, running, {"Stopped"})


def test_retry_and_bulk_bad_input_is_refused_and_changes_nothing(
        app_client: FlaskClient, services: Services, private_queue: tuple[dict[str, str], Services],
        fn_name: str, deploy: Any, statuses: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    url = f"/v1/functions/{fn_name}/invocations"
    assert app_client.post(f"{url}/nope/retry").status_code == 404
    assert app_client.post(f"{url}/9bad/retry").status_code == 400
    iid = private_queue[1].submitter.submit(fn_name, {}).invocation_id
    services.control.stop(services.ledger.get_invocation(fn_name, iid))
    history = statuses(services, fn_name, iid)
    cases = [
        (f"{url}/{iid}/retry", {"includeSucceeded": "yes"}, 400),
        (f"{url}/{iid}/retry", {"force": True}, 400),
        (f"{url}/{iid}/retry", [1, 2], 400),
        ("/v1/invocations/retry", {}, 400),
        ("/v1/invocations/retry", {"status": "Bogus"}, 400),
        ("/v1/invocations/retry", {"function": fn_name, "limit": 0}, 400),
        ("/v1/invocations/retry", {"function": fn_name, "cursor": "x"}, 400),
        ("/v1/invocations/stop", {"function": "9bad"}, 400),
        ("/v1/invocations/stop", {"since": "yesterday"}, 400),
    ]
    for path, body, status in cases:
        answer = app_client.post(path, json=body)
        assert answer.status_code == status, (path, body, answer.get_json())
        assert answer.get_json()["error"]["message"]
    not_json = app_client.post(f"{url}/{iid}/retry", data="x", content_type="text/plain")
    assert not_json.status_code == 415
    assert statuses(services, fn_name, iid) == history == ["Enqueued", "Stopped"]


def test_bulk_stop_and_retry_by_filter(services: Services, private_queue: tuple[dict[str, str], Services],
                                       fn_name: str, deploy: Any, statuses: Any) -> None:
    _, isolated = private_queue  # no worker: everything stays where the bulk actions put it
    app_client = create_app(isolated.settings).test_client()  # retries ring the private queue too
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    ids = [isolated.submitter.submit(fn_name, {}, invocation_id=f"batch_{n}").invocation_id for n in range(3)]
    other = isolated.submitter.submit(fn_name, {}, invocation_id="keep_me").invocation_id
    stopped = app_client.post("/v1/invocations/stop", json={"function": fn_name, "prefix": "batch_"}).get_json()
    assert stopped["changed"] == 3 and stopped["refused"] == []
    assert {i["invocationId"] for i in stopped["items"]} == set(ids)
    assert services.ledger.get_invocation(fn_name, other).status.value == "Enqueued"
    again = app_client.post("/v1/invocations/stop", json={"function": fn_name, "prefix": "batch_"}).get_json()
    assert again["changed"] == 0  # already ended: nothing selected
    retried = app_client.post("/v1/invocations/retry",
                              json={"function": fn_name, "status": ["Stopped", "Failed"]}).get_json()
    assert retried["changed"] == 3
    assert all(services.ledger.get_invocation(fn_name, i).status.value == "Enqueued" for i in ids)
    assert statuses(services, fn_name, ids[0]) == ["Enqueued", "Stopped", "Enqueued"]
    cleanup = app_client.post("/v1/invocations/stop", json={"function": fn_name}).get_json()
    assert cleanup["changed"] == 4


# --- logs -----------------------------------------------------------------------------------------------------------
def test_logs_are_bounded_per_invocation_with_a_truncation_marker(
        app_client: FlaskClient, services: Services, private_queue: tuple[dict[str, str], Services],
        start_worker: Any, fn_name: str, deploy: Any, wait_for_status: Any) -> None:
    private, isolated = private_queue
    start_worker(max_log_lines=10, **private)
    deploy(app_client, fn_name, "tests.handlers:chatty")
    iid = isolated.submitter.submit(fn_name, {"lines": 40}).invocation_id
    wait_for_status(services, fn_name, iid, {"Succeeded"})
    lines = app_client.get(f"/v1/functions/{fn_name}/invocations/{iid}/logs").get_json()["items"]
    assert len(lines) == 11
    assert [line["message"] for line in lines[:10]] == [f"line {n}" for n in range(10)]
    assert "log truncated" in lines[-1]["message"] and lines[-1]["level"] == "WARNING"
