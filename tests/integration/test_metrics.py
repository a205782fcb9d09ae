"""GET /metrics: Prometheus text read from the ledger, on both backends."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from taskservice import create_app
from taskservice.services import Services
from tests.support import unread_queue

if TYPE_CHECKING:
    from tests.support import Backend, WorkerProcess


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for s in family.samples}


def test_metrics_count_live_and_recently_finished_invocations(
        app_client: FlaskClient, services: Services, backend: Backend, shared_worker: WorkerProcess,
        fn_name: str, deploy: Any, wait_for_status: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    done = services.submitter.submit(fn_name, {}).invocation_id
    wait_for_status(services, fn_name, done, {"Succeeded"})
    with unread_queue(backend, "metrics") as settings:
        nobody_listens = Services.build(settings)
        try:
            nobody_listens.submitter.submit(fn_name, {})
            nobody_listens.submitter.submit(fn_name, {})
        finally:
            nobody_listens.close()
    secured = create_app(backend.settings.merged(auth=True)).test_client()  # probes need no token
    found = samples(secured)
    assert found[("taskservice_invocations_live", (("function", fn_name), ("status", "Enqueued")))] == 2
    assert found[("taskservice_invocations_finished_recent", (("function", fn_name), ("status", "Succeeded")))] == 1
    assert found[("taskservice_oldest_waiting_seconds", ())] >= 0
    assert ("taskservice_destination_records_pending", ()) in found
    app_client.post("/v1/invocations/stop", json={"function": fn_name})
