"""The guarantees: one winner among concurrent duplicates, one execution per invocation however often the doorbell
rings, and a killed worker's invocation finished by another one."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask.testing import FlaskClient

from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend


@pytest.fixture
def private_queue(backend: Backend, request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], Services]]:
    """A queue of this module's test alone, and services that submit to it: a worker started on it is its only
    consumer, so `settle` can tell when that worker has handled every doorbell."""
    private = {"queue": f"{backend.settings.queue}_{request.node.name[5:25]}"}
    isolated = Services.build(backend.settings.merged(**private))
    yield private, isolated
    isolated.close()


def test_fifty_concurrent_submissions_of_one_id(app_client: FlaskClient, services: Services, start_api: Any,
                                                start_worker: Any, private_queue: tuple[dict[str, str], Services],
                                                fn_name: str, tmp_path: Path, deploy: Any, wait_for_status: Any,
                                                settle: Any) -> None:
    private, isolated = private_queue
    api_server = start_api(workers=4, **private).base  # the real API under gunicorn, as production runs it
    worker = start_worker(**private)
    deploy(app_client, fn_name, "tests.handlers:counted")
    marker = tmp_path / "runs"
    barrier = threading.Barrier(50)
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        session = requests.Session()
        barrier.wait()
        response = session.post(f"{api_server}/v1/functions/{fn_name}/invocations",
                                json={"marker": str(marker), "sender": n}, headers={"X-Invocation-Id": "the_one"},
                                timeout=30)
        with lock:
            answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(code for code, _ in answers)
    assert codes == [202] + [409] * 49
    winner = next(body for code, body in answers if code == 202)
    for code, body in answers:
        if code == 409:
            assert body["invocation"]["requestId"] == winner["requestId"]
    wait_for_status(services, fn_name, "the_one", {"Succeeded"})
    settle(worker, isolated, fn_name)  # every doorbell the 50 submissions rang has been handled
    assert len(marker.read_text().splitlines()) == 1
    assert services.ledger.get_invocation(fn_name, "the_one").attempts == 1


def test_the_same_doorbell_delivered_twice_runs_once(app_client: FlaskClient, services: Services,
                                                     start_worker: Any, private_queue: tuple[dict[str, str], Services],
                                                     fn_name: str, tmp_path: Path, deploy: Any,
                                                     wait_for_status: Any, settle: Any) -> None:
    private, isolated = private_queue
    worker = start_worker(**private)
    deploy(app_client, fn_name, "tests.handlers:counted")
    marker = tmp_path / "runs"
    inv = isolated.submitter.submit(fn_name, {"marker": str(marker), "seconds": 0.5})
    for _ in range(3):  # the same message again, as a broker redelivery would
        isolated.dispatcher.ring(inv.pk)
    done = wait_for_status(services, fn_name, inv.invocation_id, {"Succeeded"})
    isolated.dispatcher.ring(inv.pk)  # and once more after it ended
    settle(worker, isolated, fn_name)  # all five doorbells have been handled
    assert len(marker.read_text().splitlines()) == 1
    assert done.attempts == 1
    assert services.ledger.get_by_pk(inv.pk).status.value == "Succeeded"


def test_a_worker_killed_mid_task_is_replaced_by_another(app_client: FlaskClient, services: Services,
                                                         backend: Backend, start_worker: Any, fn_name: str,
                                                         tmp_path: Path, deploy: Any, wait_for_status: Any,
                                                         process_gone: Any, eventually: Any) -> None:
    private = {"queue": f"{backend.settings.queue}_kill"}
    isolated = Services.build(backend.settings.merged(**private))
    marker, gate = tmp_path / "runs", tmp_path / "gate"

    def first_run_marked() -> str:
        text = marker.read_text() if marker.exists() else ""
        return text if text.endswith("\n") else ""  # the whole line, pid and all

    try:
        deploy(app_client, fn_name, "tests.handlers:counted")
        first = start_worker(**private)
        # Held at the gate until the test opens it: attempt 1 cannot finish before its worker is killed, however
        # long the test takes to get there.
        inv = isolated.submitter.submit(fn_name, {"marker": str(marker), "gate": str(gate)})
        running = wait_for_status(services, fn_name, inv.invocation_id, {"Running"})
        marked = eventually(first_run_marked, what="the handler to record its pid")
        assert "attempt=1 " in marked, marked
        handler_pid = int(marked.split("pid=")[1].split()[0])
        first.kill()  # SIGKILL: no graceful shutdown, no chance to write anything
        assert process_gone(handler_pid), "the handler outlived its worker"
        gate.touch()  # the next attempt may finish
        start_worker(**private)
        done = wait_for_status(services, fn_name, inv.invocation_id, {"Succeeded"}, timeout_s=60)
        assert done.attempts == 2
        assert done.worker != running.worker
        history = [(t.from_status and t.from_status.value, t.to_status.value, t.reason)
                   for t in services.ledger.transitions(inv.pk)]
        assert ("Running", "Retrying", "lease lapsed") in history
        assert len(marker.read_text().splitlines()) == 2
    finally:
        isolated.close()



def test_a_doorbell_that_never_reached_the_broker_is_rung_by_the_reaper(
        app_client: FlaskClient, services: Services, shared_worker: Any, fn_name: str,
        deploy: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    # What submit() leaves behind when the broker refuses the publish: a ledger row flagged as not dispatched.
    inv = services.ledger.create_invocation(fn_name, "lost_bell", "req-lost-bell", "{}")
    services.ledger.mark_undispatched([inv.pk])
    done = wait_for_status(services, fn_name, "lost_bell", {"Succeeded"})
    assert done.attempts == 1


def test_finished_invocations_are_purged_after_retention_and_their_id_is_free_again(
        app_client: FlaskClient, services: Services, shared_worker: Any, fn_name: str,
        deploy: Any, wait_for_status: Any, eventually: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    first = services.submitter.submit(fn_name, {"n": 1}, invocation_id="kept_for_a_while")
    wait_for_status(services, fn_name, "kept_for_a_while", {"Succeeded"})
    services.ledger.reap(retention_s=3600)
    assert services.ledger.get_by_pk(first.pk) is not None  # well inside retention: kept, id still taken
    purged = []

    def purge_pass() -> bool:
        """One reaper pass with no retention; each purges a bounded batch, oldest first (earlier tests left many
        behind). Whether our invocation is gone."""
        purged.append(services.ledger.reap(retention_s=0).purged)
        return services.ledger.get_by_pk(first.pk) is None

    eventually(purge_pass, what="the reaper to purge the invocation finished past its retention of 0 s")
    assert sum(purged) >= 1
    assert services.ledger.get_by_pk(first.pk) is None
    assert services.ledger.transitions(first.pk) == [] and services.ledger.logs(first.pk) == []
    again = services.submitter.submit(fn_name, {"n": 2}, invocation_id="kept_for_a_while")
    assert again.pk != first.pk
